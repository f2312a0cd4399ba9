"""The model zoo: small Hugging Face transformers models with random weights.

In:  a model name from ``MODELS`` and a ``quick`` flag.
Out: ``build(name, quick)`` -> a seeded ``nn.Module`` (random weights from a
     small config: nothing is fetched from a hub, ``HF_HUB_OFFLINE=1``);
     ``inputs(name, quick, mode, mask, size=None)`` -> the keyword arguments
     of one forward call (seeded random token ids / pixel values / audio
     features; ``mode="train"`` adds labels so the model computes its own
     loss); ``loss(name, out)`` -> the scalar loss of a training step.

Every model has 2 layers, hidden 128 (64 with ``quick``), 4 heads (2),
vocab 512, batch 2, sequence 32 (16), dropout 0 (train mode must be
deterministic to compare with eager), the library's default attention
implementation (SDPA where the model has it). ``mask=True`` passes an
attention mask whose second row ends in padding zeros (right padding, so
no causal row is fully masked); models without a padding mask (ViT) have
no masked variant. ``size`` changes the input's variable dimension for the
recompile run: the sequence length, or the batch for ViT.

Inference calls pass ``use_cache=False`` where the model has a KV cache:
the zoo measures one full forward pass, not generation.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

VOCAB = 512
BATCH = 2


@dataclasses.dataclass(frozen=True)
class Sizes:
    hidden: int
    heads: int
    layers: int
    seq: int
    batch: int = BATCH
    vocab: int = VOCAB

    @property
    def ffn(self) -> int:
        return 2 * self.hidden


def sizes(quick: bool) -> Sizes:
    return Sizes(hidden=64, heads=2, layers=2, seq=16) if quick else Sizes(hidden=128, heads=4, layers=2, seq=32)


@dataclasses.dataclass(frozen=True)
class ZooModel:
    """One registry entry.

    config: Sizes -> a transformers config (random weights are built from it);
    model_class: the concrete transformers class (``transformers.<name>``);
    kind: how inputs are made: "encoder" (token ids, sequence labels),
          "causal" (token ids, labels = the ids), "seq2seq" (encoder ids +
          decoder ids / labels), "whisper" (audio features + decoder ids),
          "vision" (pixel values, class labels);
    has_mask: whether the model takes a padding attention mask;
    cache: whether the forward takes ``use_cache``;
    var: which dimension the recompile run varies ("seq" or "batch").
    """

    name: str
    config: Callable[[Sizes], Any]
    model_class: str
    kind: str
    has_mask: bool = True
    cache: bool = False
    var: str = "seq"
    extra: bool = False  # not in the default set (run with --only)


def _t():
    import transformers

    return transformers


NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
# Room for the recompile run's longer sequences (and RoBERTa / OPT position offsets).
MAX_POS = 128


def _bert(s: Sizes):
    return _t().BertConfig(vocab_size=s.vocab, hidden_size=s.hidden, num_hidden_layers=s.layers,
                           num_attention_heads=s.heads, intermediate_size=s.ffn,
                           max_position_embeddings=MAX_POS, num_labels=2, **NO_DROPOUT)


def _distilbert(s: Sizes):
    return _t().DistilBertConfig(vocab_size=s.vocab, dim=s.hidden, n_layers=s.layers, n_heads=s.heads,
                                 hidden_dim=s.ffn, max_position_embeddings=MAX_POS, dropout=0.0,
                                 attention_dropout=0.0, seq_classif_dropout=0.0, num_labels=2)


def _roberta(s: Sizes):
    return _t().RobertaConfig(vocab_size=s.vocab, hidden_size=s.hidden, num_hidden_layers=s.layers,
                              num_attention_heads=s.heads, intermediate_size=s.ffn,
                              max_position_embeddings=MAX_POS + 2, num_labels=2, **NO_DROPOUT)


def _albert(s: Sizes):
    return _t().AlbertConfig(vocab_size=s.vocab, embedding_size=s.hidden // 2, hidden_size=s.hidden,
                             num_hidden_layers=s.layers, num_attention_heads=s.heads,
                             intermediate_size=s.ffn, max_position_embeddings=MAX_POS, num_labels=2,
                             classifier_dropout_prob=0.0, **NO_DROPOUT)


def _electra(s: Sizes):
    return _t().ElectraConfig(vocab_size=s.vocab, embedding_size=s.hidden // 2, hidden_size=s.hidden,
                              num_hidden_layers=s.layers, num_attention_heads=s.heads,
                              intermediate_size=s.ffn, max_position_embeddings=MAX_POS, num_labels=2,
                              **NO_DROPOUT)


def _gpt2(s: Sizes):
    return _t().GPT2Config(vocab_size=s.vocab, n_positions=MAX_POS, n_embd=s.hidden, n_layer=s.layers,
                           n_head=s.heads, n_inner=s.ffn, resid_pdrop=0.0, embd_pdrop=0.0,
                           attn_pdrop=0.0)


def _opt(s: Sizes):
    return _t().OPTConfig(vocab_size=s.vocab, hidden_size=s.hidden, num_hidden_layers=s.layers,
                          num_attention_heads=s.heads, ffn_dim=s.ffn, word_embed_proj_dim=s.hidden,
                          max_position_embeddings=MAX_POS + 2, dropout=0.0, attention_dropout=0.0,
                          activation_dropout=0.0, layerdrop=0.0, pad_token_id=1, bos_token_id=2,
                          eos_token_id=2)


def _gpt_neox(s: Sizes):
    return _t().GPTNeoXConfig(vocab_size=s.vocab, hidden_size=s.hidden, num_hidden_layers=s.layers,
                              num_attention_heads=s.heads, intermediate_size=s.ffn,
                              max_position_embeddings=MAX_POS, rotary_pct=0.25, hidden_dropout=0.0,
                              attention_dropout=0.0, bos_token_id=0, eos_token_id=0)


def _llama_like(cls: str):
    def make(s: Sizes):
        return getattr(_t(), cls)(vocab_size=s.vocab, hidden_size=s.hidden, num_hidden_layers=s.layers,
                                  num_attention_heads=s.heads, num_key_value_heads=max(s.heads // 2, 1),
                                  intermediate_size=s.ffn, max_position_embeddings=MAX_POS,
                                  attention_dropout=0.0, tie_word_embeddings=False,
                                  bos_token_id=0, eos_token_id=0, pad_token_id=0)
    return make


def _t5(s: Sizes):
    return _t().T5Config(vocab_size=s.vocab, d_model=s.hidden, d_kv=s.hidden // s.heads, d_ff=s.ffn,
                         num_layers=s.layers, num_decoder_layers=s.layers, num_heads=s.heads,
                         relative_attention_num_buckets=16, dropout_rate=0.0,
                         decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)


def _bart(s: Sizes):
    return _t().BartConfig(vocab_size=s.vocab, d_model=s.hidden, encoder_layers=s.layers,
                           decoder_layers=s.layers, encoder_attention_heads=s.heads,
                           decoder_attention_heads=s.heads, encoder_ffn_dim=s.ffn,
                           decoder_ffn_dim=s.ffn, max_position_embeddings=MAX_POS, dropout=0.0,
                           attention_dropout=0.0, activation_dropout=0.0, encoder_layerdrop=0.0,
                           decoder_layerdrop=0.0, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                           decoder_start_token_id=2, forced_eos_token_id=None)


# Whisper: the encoder needs exactly 2 * max_source_positions feature frames.
WHISPER_MELS, WHISPER_SRC = 16, 16


def _whisper(s: Sizes):
    return _t().WhisperConfig(vocab_size=s.vocab, d_model=s.hidden, encoder_layers=s.layers,
                              decoder_layers=s.layers, encoder_attention_heads=s.heads,
                              decoder_attention_heads=s.heads, encoder_ffn_dim=s.ffn,
                              decoder_ffn_dim=s.ffn, num_mel_bins=WHISPER_MELS,
                              max_source_positions=WHISPER_SRC, max_target_positions=MAX_POS,
                              dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                              encoder_layerdrop=0.0, decoder_layerdrop=0.0, pad_token_id=0,
                              bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
                              suppress_tokens=None, begin_suppress_tokens=None)


VIT_IMAGE, VIT_PATCH = 32, 8


def _vit(s: Sizes):
    return _t().ViTConfig(hidden_size=s.hidden, num_hidden_layers=s.layers, num_attention_heads=s.heads,
                          intermediate_size=s.ffn, image_size=VIT_IMAGE, patch_size=VIT_PATCH,
                          num_channels=3, num_labels=4, **NO_DROPOUT)


def _mamba(s: Sizes):
    return _t().MambaConfig(vocab_size=s.vocab, hidden_size=s.hidden, num_hidden_layers=s.layers,
                            state_size=8, expand=2, conv_kernel=4, pad_token_id=0, bos_token_id=0,
                            eos_token_id=0)


MODELS: dict[str, ZooModel] = {m.name: m for m in (
    ZooModel("bert", _bert, "BertForSequenceClassification", "encoder"),
    ZooModel("distilbert", _distilbert, "DistilBertForSequenceClassification", "encoder"),
    ZooModel("roberta", _roberta, "RobertaForSequenceClassification", "encoder"),
    ZooModel("albert", _albert, "AlbertForSequenceClassification", "encoder"),
    ZooModel("electra", _electra, "ElectraForSequenceClassification", "encoder"),
    ZooModel("gpt2", _gpt2, "GPT2LMHeadModel", "causal", cache=True),
    ZooModel("opt", _opt, "OPTForCausalLM", "causal", cache=True),
    ZooModel("gpt_neox", _gpt_neox, "GPTNeoXForCausalLM", "causal", cache=True),
    ZooModel("llama", _llama_like("LlamaConfig"), "LlamaForCausalLM", "causal", cache=True),
    ZooModel("qwen2", _llama_like("Qwen2Config"), "Qwen2ForCausalLM", "causal", cache=True),
    ZooModel("mistral", _llama_like("MistralConfig"), "MistralForCausalLM", "causal", cache=True,
             extra=True),
    ZooModel("t5", _t5, "T5ForConditionalGeneration", "seq2seq", cache=True),
    ZooModel("bart", _bart, "BartForConditionalGeneration", "seq2seq", cache=True),
    ZooModel("whisper", _whisper, "WhisperForConditionalGeneration", "whisper", cache=True),
    ZooModel("vit", _vit, "ViTForImageClassification", "vision", has_mask=False, var="batch"),
    ZooModel("mamba", _mamba, "MambaForCausalLM", "causal", cache=True),
)}

DEFAULT_MODELS = [n for n, m in MODELS.items() if not m.extra]


def config(name: str, quick: bool = False):
    return MODELS[name].config(sizes(quick))


def build(name: str, quick: bool = False, seed: int = 0) -> torch.nn.Module:
    """A fresh model with seeded random weights (never downloaded)."""
    m = MODELS[name]
    cfg = m.config(sizes(quick))
    torch.manual_seed(seed)
    model = getattr(_t(), m.model_class)(cfg)
    model.eval()
    return model


def _mask(batch: int, seq: int) -> torch.Tensor:
    """Ones, except the tail of every odd row (right padding: a quarter of it)."""
    mask = torch.ones(batch, seq, dtype=torch.long)
    pad = max(seq // 4, 1)
    mask[1::2, seq - pad:] = 0
    return mask


def inputs(name: str, quick: bool, mode: str, mask: bool, size: int | None = None,
           seed: int = 1) -> dict[str, Any]:
    """The keyword arguments of one forward call (seeded; ``size`` overrides
    the sequence length, or the batch for ViT)."""
    m = MODELS[name]
    s = sizes(quick)
    if mask and not m.has_mask:
        raise ValueError(f"{name} takes no attention mask")
    seq, batch = s.seq, s.batch
    if size is not None:
        if m.var == "batch":
            batch = size
        else:
            seq = size
    g = torch.Generator().manual_seed(seed)
    low = 3  # keep clear of the special ids (pad / bos / eos) of every config
    kw: dict[str, Any] = {}
    if m.kind == "vision":
        kw["pixel_values"] = torch.randn(batch, 3, VIT_IMAGE, VIT_IMAGE, generator=g)
        if mode == "train":
            kw["labels"] = torch.randint(0, 4, (batch,), generator=g)
        return kw
    ids = torch.randint(low, s.vocab, (batch, seq), generator=g)
    am = _mask(batch, seq) if mask else None
    if m.kind == "whisper":
        kw["input_features"] = torch.randn(batch, WHISPER_MELS, 2 * WHISPER_SRC, generator=g)
        if mode == "train":
            kw["labels"] = ids.masked_fill(am == 0, -100) if am is not None else ids
        else:
            kw["decoder_input_ids"] = ids
        if am is not None:
            kw["decoder_attention_mask"] = am
    elif m.kind == "seq2seq":
        kw["input_ids"] = ids
        if am is not None:
            kw["attention_mask"] = am
        dec = torch.randint(low, s.vocab, (batch, seq), generator=g)
        if mode == "train":
            kw["labels"] = dec
        else:
            kw["decoder_input_ids"] = dec
    else:
        kw["input_ids"] = ids
        if am is not None:
            kw["attention_mask"] = am
        if mode == "train":
            if m.kind == "encoder":
                kw["labels"] = torch.randint(0, 2, (batch,), generator=g)
            else:
                kw["labels"] = ids.masked_fill(am == 0, -100) if am is not None else ids
    if m.cache:
        kw["use_cache"] = False
    return kw


def loss(name: str, out: Any) -> torch.Tensor:
    """The training loss: every zoo model computes it itself from ``labels``."""
    return out.loss if hasattr(out, "loss") else out[0]


def var_sizes(name: str, quick: bool) -> list[int]:
    """The three new sizes of the recompile run (the base size is already compiled)."""
    m = MODELS[name]
    s = sizes(quick)
    if m.var == "batch":
        return [s.batch + 1, s.batch + 2, s.batch + 3]
    return [s.seq + 4, s.seq + 8, s.seq + 12]
