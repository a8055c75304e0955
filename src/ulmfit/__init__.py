"""ulmfit: ULMFiT (Howard & Ruder 2018) as a library and a command-line tool.

Stage 1 (``ulmfit pretrain``) trains an AWD-LSTM language model on general text; stage 2
(``ulmfit finetune-lm``) adapts it to the target text; stage 3 (``ulmfit train-classifier``) turns
it into a classifier. ``LanguageModel`` and ``TextClassifier`` load trained models from their
directories (safetensors + JSON, never pickle).
"""

__version__ = "0.1.0"

__all__ = ["__version__", "LanguageModel", "TextClassifier", "UlmfitError", "UlmfitWarning", "TrainingInterrupted"]


def __getattr__(name):
    # Lazy, so that `import ulmfit` (and the tokenizer) never pays for importing torch.
    if name == "LanguageModel":
        from .api import LanguageModel

        return LanguageModel
    if name == "TextClassifier":
        from .classifier_api import TextClassifier

        return TextClassifier
    if name in ("UlmfitError", "UlmfitWarning", "TrainingInterrupted"):  # what callers catch or filter
        from . import io

        return getattr(io, name)
    raise AttributeError(name)
