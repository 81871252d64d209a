"""The shapes hold for the ontology, and a concept that breaks a rule is reported."""

from __future__ import annotations

import pytest

from kb.validate import store_as_ntriples, validate_ntriples, validate_store

PREFIXES = """
@prefix skos: <http://www.w3.org/2004/02/skos/core#> .
@prefix owl: <http://www.w3.org/2002/07/owl#> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix kdo: <https://w3id.org/kdkb/ontology#> .
@prefix kd: <https://w3id.org/kdkb/id/> .
@prefix kdp: <https://w3id.org/kdkb/paper/> .
@prefix mls: <http://www.w3.org/ns/mls#> .
"""


def test_ontology_conforms(built, paths):
    report = validate_store(built.store, paths.shapes_file)
    assert report.conforms, "\n".join(f"{v['focus']} {v['path']}: {v['message']}" for v in report.violations)


def _with_extra(built, paths, turtle: str):
    import rdflib
    extra = rdflib.Graph().parse(data=PREFIXES + turtle, format="turtle").serialize(format="nt")
    data = store_as_ntriples(built.store, exclude_graphs=("https://w3id.org/kdkb/graph/ontology/shapes",))
    return validate_ntriples(data + extra.encode(), paths.shapes_file)


@pytest.mark.parametrize("turtle, focus, words", [
    ("""kd:NoDefinition a owl:Class , skos:Concept , kdo:Technique ; skos:inScheme kd:Scheme ;
          rdfs:subClassOf kd:ResponseBasedDistillation ; skos:broader kd:ResponseBasedDistillation ;
          kdo:termId "KDKB-9001" ; skos:prefLabel "No definition"@en ;
          kdo:definitionSource kdp:hinton2015 ; kdo:introducedIn kdp:hinton2015 ; kdo:objective "x" .""",
     "NoDefinition", "definition"),
    ("""kd:DanglingPaper a owl:Class , skos:Concept , kdo:Technique ; skos:inScheme kd:Scheme ;
          rdfs:subClassOf kd:ResponseBasedDistillation ; skos:broader kd:ResponseBasedDistillation ;
          kdo:termId "KDKB-9002" ; skos:prefLabel "Dangling"@en ; skos:definition "d"@en ;
          kdo:definitionSource kdp:hinton2015 ; kdo:introducedIn kdp:nosuchpaper ; kdo:objective "x" .""",
     "DanglingPaper", "paper"),
    ("""kd:Orphan a skos:Concept , kdo:RelatedTerm ; skos:inScheme kd:Scheme ;
          kdo:termId "KDKB-9003" ; skos:prefLabel "Orphan"@en ; skos:definition "d"@en ;
          kdo:definitionSource kdp:hinton2015 .""",
     "Orphan", "parent"),
    ("""kd:Duplicate a skos:Concept , kdo:RelatedTerm ; skos:inScheme kd:Scheme ; skos:topConceptOf kd:Scheme ;
          kdo:termId "AI-0279" ; skos:prefLabel "Duplicate"@en ; skos:definition "d"@en ;
          kdo:definitionSource kdp:hinton2015 .""",
     "Duplicate", "AI-0279"),
    ("""kd:SoftTargetDistillation kdo:implementedBy <https://w3id.org/kdkb/impl/bad> .
        <https://w3id.org/kdkb/impl/bad> a mls:Implementation ; kdo:pythonModule "os.system" .""",
     "impl/bad", "module under reference_impl"),
    ("""kd:AxisLess a owl:Class , skos:Concept , kdo:Technique ; skos:inScheme kd:Scheme ;
          rdfs:subClassOf kd:TrainingMethod ; skos:broader kd:TrainingMethod ;
          kdo:termId "KDKB-9004" ; skos:prefLabel "Axis-less"@en ; skos:definition "d"@en ;
          kdo:definitionSource kdp:hinton2015 ; kdo:introducedIn kdp:hinton2015 ; kdo:objective "x" .""",
     "AxisLess", "axis"),
])
def test_a_concept_breaking_a_rule_is_reported(built, paths, turtle, focus, words):
    report = _with_extra(built, paths, turtle)
    assert not report.conforms
    hits = [v for v in report.violations if v["focus"].endswith(focus)]
    assert hits, report.text
    assert any(words.lower() in v["message"].lower() for v in hits), hits
