"""One module per technique. Each defines CONCEPT (its kd: concept), EXPERIMENTS (the claims
it tests) and a main(); `kd run <name>` and `kd bench <name>` find them here."""
