"""Privacy tools for Forge training: differentially private fine-tuning (:mod:`recipes.privacy.dp`, Opacus DP-SGD) and
scrubbing personal data from pretraining corpora (:mod:`recipes.privacy.pii`).

Both import their third-party libraries lazily, so ``import privacy`` costs nothing when they are unused.
"""
