"""umT5 text encoder of Wan2.1: prompts -> per-prompt token embeddings (SAMA.md §1).

Shape legend: L_i = real token count of prompt i (its attention-mask sum, including the
closing ``</s>``, at most ``max_length``), D = d_model (4096 for umT5-XXL).

This follows diffusers' ``WanPipeline._get_t5_prompt_embeds``: the same prompt cleaning
(HTML-unescape + whitespace collapse; ftfy is used there when installed, never here, so the
embeddings do not depend on an optional package), ``add_special_tokens=True``, truncation at
``max_length`` (512), padding to ``max_length`` by default, and the embeddings trimmed to each
prompt's real length. The pipeline zero-pads them back to 512 for the DiT; we store the trimmed
tensors and leave padding to the consumer.
"""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING, Any

from sama.encoders._hf import hub_kwargs, load_or_explain, load_weights
from sama.encoders.config import TextEncoderConfig, hash_model_config, resolve_device

if TYPE_CHECKING:
    import torch

# Checkpoints saved from UMT5EncoderModel may carry the decoder-less T5 extras; not weights we use.
_IGNORABLE = ("decoder.", "lm_head.")


def clean_prompt(text: str) -> str:
    """WanPipeline's ``prompt_clean`` without ftfy: unescape HTML twice, collapse whitespace."""
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


class UMT5TextEncoder:
    """A loaded tokenizer + ``UMT5EncoderModel``."""

    def __init__(self, model: Any, tokenizer: Any, cfg: TextEncoderConfig, device: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.device = device
        self.hidden_size = int(model.config.d_model)

    @classmethod
    def load(cls, cfg: TextEncoderConfig | None = None) -> UMT5TextEncoder:
        """``AutoTokenizer`` + ``UMT5EncoderModel.from_pretrained`` from the Wan diffusers repo."""
        cfg = (cfg or TextEncoderConfig()).validate()
        from transformers import AutoTokenizer, UMT5EncoderModel

        device = resolve_device(cfg.device)
        tokenizer = load_or_explain(
            lambda: AutoTokenizer.from_pretrained(
                cfg.model_id, **hub_kwargs(cfg.revision, cfg.tokenizer_subfolder)
            ),
            "tokenizer",
            cfg.model_id,
            cfg.tokenizer_subfolder,
            cfg.revision,
        )
        model = load_weights(UMT5EncoderModel, cfg, "text_encoder", allowed_unexpected=_IGNORABLE)
        model.to(device).eval().requires_grad_(False)
        return cls(model, tokenizer, cfg, device)

    def tokenize(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        """Token ids and attention mask ``[B, L]`` as WanPipeline builds them."""
        return self.tokenizer(
            [clean_prompt(p) for p in prompts],
            padding=self.cfg.padding,
            max_length=self.cfg.max_length,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )

    def encode(self, prompts: list[str]) -> list[torch.Tensor]:
        """Prompts -> one ``[L_i, D]`` float32 CPU tensor per prompt, trimmed by attention mask."""
        if isinstance(prompts, str):
            raise TypeError("encode takes a list of prompts, not a single string")
        out: list[torch.Tensor] = []
        for i in range(0, len(prompts), self.cfg.batch_size):
            out.extend(self._encode_batch(list(prompts[i : i + self.cfg.batch_size])))
        return out

    def _encode_batch(self, prompts: list[str]) -> list[torch.Tensor]:
        import torch

        enc = self.tokenize(prompts)
        ids_BL, mask_BL = enc["input_ids"], enc["attention_mask"]
        lengths = mask_BL.gt(0).sum(dim=1).tolist()
        with torch.inference_mode():
            h_BLD = self.model(
                input_ids=ids_BL.to(self.device), attention_mask=mask_BL.to(self.device)
            ).last_hidden_state
            h_BLD = h_BLD.float().cpu()
        return [h_BLD[b, :n].clone() for b, n in enumerate(lengths)]

    # ---- provenance -----------------------------------------------------------------------

    def config_hash(self) -> str:
        return hash_model_config(self.model.config.to_dict())

    def model_info(self) -> dict[str, Any]:
        return {
            "id": self.cfg.model_id,
            "subfolder": self.cfg.subfolder,
            "tokenizer_subfolder": self.cfg.tokenizer_subfolder,
            "revision": self.cfg.revision,
            "config_hash": self.config_hash(),
            "dtype": self.cfg.dtype,
            "max_length": self.cfg.max_length,
            "dim": int(self.model.config.d_model),
            "prompt_clean": "html_unescape+whitespace",
        }
