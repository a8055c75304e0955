"""ulmfit: Universal Language Model Fine-tuning (Howard & Ruder, 2018) as a library and CLI.

The package maps the paper onto modules: ``text`` (tokenisation rules, vocabulary), ``data``
(corpus readers, token caches, LM streams), ``model`` (AWD-LSTM and its dropouts), ``train``
(schedules, discriminative fine-tuning, the training loop) and ``checkpoint`` (safe artefacts).
"""

__version__ = "0.1.0"

__all__ = ["__version__", "LanguageModel"]


def __getattr__(name):
    # Lazy so that `import ulmfit` (and the tokenizer) never pays for importing torch.
    if name == "LanguageModel":
        from .api import LanguageModel

        return LanguageModel
    raise AttributeError(name)
