"""Everything ../shared/CATALOGUE.md asks for is in the ontology, and nothing unlisted is
typed as a technique or category."""

from __future__ import annotations

import pytest

from kb.namespaces import KD

# The catalogue, encoded: ⚙ techniques and ▣ categories by IRI local name.
CATALOGUE_TECHNIQUES = {
    # response-based and the 2006/2014 roots
    "SoftTargetDistillation", "MUNGECompression", "LogitMatching", "DecoupledKD",
    # feature-based
    "FitNets", "AttentionTransfer",
    # relation-based
    "RelationalKD", "SimilarityPreservingKD", "ContrastiveRepresentationDistillation",
    # schemes
    "DeepMutualLearning", "BeYourOwnTeacher", "BornAgainNetworks",
    # algorithms
    "AdversarialDistillation", "MultiTeacherDistillation", "CrossModalDistillation",
    "TeacherAssistantDistillation", "ReverseDistillation", "DataFreeDistillation",
    "GraphDistillation", "SoftDecisionTreeDistillation", "FederatedEnsembleDistillation",
    "FairnessAudit",
    # language models
    "SequenceLevelDistillation", "InstructionDistillation", "TokenLevelDistillation",
    "DistilBERTDistillation", "TinyBERTDistillation", "MiniLMDistillation", "PatientKD",
    # added by issue #12 (language-model family), beyond the catalogue's list
    "GeneralizedKnowledgeDistillation", "SkewKLDistillation", "ReverseKLDistillation", "TopKLogitDistillation",
    "UniversalLogitDistillation",
    # dataset distillation
    "MetaLearnedDatasetDistillation", "GradientMatching", "TrajectoryMatching",
    "DistributionMatchingDM",
}
CATALOGUE_CATEGORIES = {
    "KnowledgeDistillation",
    "ResponseBasedDistillation", "FeatureBasedDistillation", "RelationBasedDistillation",
    "OfflineDistillation", "OnlineDistillation", "SelfDistillation",
    "DistillationAlgorithm", "LanguageModelDistillation",
    "DatasetDistillation", "PerformanceMatching", "ParameterMatching", "DistributionMatching",
}
CATALOGUE_RELATED_TERMS = {
    "TrainingMethod", "TeacherModel", "StudentModel", "SoftTargets", "HardLabels", "Logits",
    "SoftmaxTemperature", "DarkKnowledge", "ModelCompression", "Pruning", "Quantization",
    "TransferLearning", "EdgeDeployment", "CapacityGap",
}
CATALOGUE_EXAMPLE_SYSTEMS = {"DistilBERT", "TinyBERT", "MobileNet", "Alpaca"}
# Papers by arXiv id or DOI, as the catalogue cites them.
CATALOGUE_PAPERS = {
    "1503.02531", "10.1145/1150402.1150464", "1312.6184", "2203.08679", "1412.6550",
    "1612.03928", "1904.05068", "1907.09682", "1910.10699", "1706.00384", "1905.08094",
    "1805.04770", "1805.05532", "1709.00513", "10.1145/3097983.3098135", "1507.00448",
    "1902.03393", "1909.11723", "1904.01186", "1912.08795", "2110.08727", "1711.09784",
    "2006.07242", "2106.10494", "1606.07947", "2306.08543", "1910.01108", "1909.10351",
    "1811.10959", "2006.05929", "2203.11932", "2110.04181", "2002.10957", "1908.09355",
    "2306.13649", "2402.03898", "2503.16870", "2212.10560",
}
APPLICATIONS = ["vision", "speech", "language", "detection", "acoustic", "graph", "edge",
                "medical", "translation"]


def local_names(iris: set[str]) -> set[str]:
    return {i.removeprefix(KD) for i in iris if i.startswith(KD)}


def test_every_catalogue_technique_and_no_other(iris):
    assert local_names(iris("kdo:Technique")) == CATALOGUE_TECHNIQUES


def test_every_catalogue_category_and_no_other(iris):
    assert local_names(iris("kdo:Category")) == CATALOGUE_CATEGORIES


def test_related_terms_and_example_systems(iris):
    assert CATALOGUE_RELATED_TERMS <= local_names(iris("kdo:RelatedTerm"))
    assert CATALOGUE_EXAMPLE_SYSTEMS <= local_names(iris("kdo:ExampleSystem"))


def test_every_catalogue_paper_with_identifier(built):
    rows = built.select("""
        SELECT ?id WHERE { ?p a bibo:AcademicArticle .
                           { ?p kdo:arxivId ?id } UNION { ?p bibo:doi ?id } }""")
    assert CATALOGUE_PAPERS <= {r["id"] for r in rows}


def test_alpaca_is_a_report_with_url(built):
    assert built.ask("ASK { kdp:taori2023 a bibo:Report ; schema:url ?u ; dcterms:issued ?y }")


@pytest.mark.parametrize("keyword", APPLICATIONS)
def test_application_areas_from_the_sources(built, keyword):
    rows = built.select(f"""
        SELECT ?a WHERE {{ ?a a kdo:Application ; skos:prefLabel ?l .
                           FILTER(CONTAINS(LCASE(STR(?l)), "{keyword}")) }}""")
    assert rows, f"no application area mentioning {keyword!r}"


def test_facts_are_findable_with_sources(built):
    kinds = {r["k"] for r in built.select("""
        SELECT DISTINCT ?k WHERE { ?f a ?k ; dcterms:source ?s . ?k rdfs:subClassOf kdo:Fact }""")}
    assert {f"https://w3id.org/kdkb/ontology#{k}" for k in
            ("Advantage", "Limitation", "HistoricalEvent", "Figure")} <= kinds
    # the LLM memory figure of the sources: 175 billion parameters, about 350 GB
    assert built.ask("ASK { ?f a kdo:Figure ; schema:value ?v . FILTER(?v = 350) }")


def test_research_directions_include_fairness_and_federated(built):
    labels = " ".join(r["l"].lower() for r in built.select(
        "SELECT ?l WHERE { ?d a kdo:ResearchDirection ; skos:prefLabel ?l }"))
    for word in ("fairness", "federated", "interpretab"):
        assert word in labels


def test_every_technique_has_its_introducing_paper_and_objective(built):
    no_paper = built.select("""
        SELECT ?t WHERE { ?t a kdo:Technique .
          FILTER NOT EXISTS { ?t kdo:introducedIn ?p . ?p dcterms:title ?title } }""")
    no_objective = built.select("""
        SELECT ?t WHERE { ?t a kdo:Technique . FILTER NOT EXISTS { ?t kdo:objective ?o } }""")
    assert no_paper == [] and no_objective == []


def test_term_ids_unique(built):
    dupes = built.select("""
        SELECT ?id (COUNT(?c) AS ?n) WHERE { ?c kdo:termId ?id } GROUP BY ?id HAVING (COUNT(?c) > 1)""")
    assert dupes == []


def test_multi_axis_membership(built):
    """A technique may sit on several axes: DML is online *and* response-based."""
    axes = {r["axis"] for r in built.select("""
        SELECT DISTINCT ?axis WHERE { kd:DeepMutualLearning rdfs:subClassOf+ ?c . ?c kdo:onAxis ?axis }""")}
    assert {KD + "KnowledgeAxis", KD + "SchemeAxis"} <= axes
