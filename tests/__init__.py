"""Test suite: a package, so test folders named like the apps (tests/preprocess) never shadow them."""
