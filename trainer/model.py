"""The SAMA DiT: Wan2.1's transformer run on [source | semantic | target] tokens (SAMA.md 1, 2).

SAMA conditions by in-context token concatenation, which diffusers' `WanTransformer3DModel`
cannot express (its forward takes one latent video). We keep the diffusers module as `self.dit`
(so its weights, attention backends, and `from_pretrained` / `save_pretrained` stay usable) and
write our own forward over its submodules: `patch_embedding`, `condition_embedder`, `rope`,
`blocks`, `norm_out`, `proj_out`, `scale_shift_table`. The three new modules carry the names of
the released SAMA checkpoint so `trainer/convert.py` can load it.

Shape legend: B batch, C latent channels, T latent frames, H/W latent height/width,
L tokens in the joint sequence, D model width, N semantic tokens (anchors x 65),
S SigLIP width (1152), Lt text tokens, Dt text width (4096), Dh attention head width.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from sama.errors import ConfigError, require
from trainer.offload import offload_input
from trainer.sama_modules import (
    NEW_MODULES,
    SEMANTIC,
    SOURCE,
    TARGET,
    SamaConfig,
    TokenLayout,
    make_new_modules,
)

require("torch", "models")
require("diffusers", "models")
require("safetensors", "models")

import torch  # noqa: E402
from diffusers import WanTransformer3DModel  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from torch import nn  # noqa: E402

from trainer.context_parallel import ContextParallel, UlyssesWanAttnProcessor  # noqa: E402

SAMA_CONFIG_FILE = "sama_config.json"
SAMA_MODULES_FILE = "sama_modules.safetensors"
DIT_SUBFOLDER = "transformer"

RotaryTables = tuple[torch.Tensor, torch.Tensor]  # (cos, sin), each (1, L, 1, Dh)


class SamaTransformer(nn.Module):
    """`WanTransformer3DModel` run on SAMA's joint sequence, plus the three new modules."""

    def __init__(
        self, dit: WanTransformer3DModel, config: SamaConfig | None = None, init_seed: int = 0
    ) -> None:
        super().__init__()
        if dit.config.image_dim is not None or dit.config.added_kv_proj_dim is not None:
            raise ConfigError(
                "SAMA builds on the text-to-video Wan DiT, but this DiT has an image-to-video "
                "config (image_dim / added_kv_proj_dim set); use a T2V checkpoint such as "
                "Wan-AI/Wan2.1-T2V-14B-Diffusers"
            )
        self.config = config or SamaConfig()
        self.dit = dit
        like = dit.patch_embedding.weight
        # The new modules' init is seeded on its own so it never depends on the global RNG.
        for name, module in make_new_modules(self.config, self.dim, init_seed).items():
            setattr(self, name, module.to(device=like.device, dtype=like.dtype))
        self.cp: ContextParallel | None = None  # context parallelism (enable_context_parallel)
        self.activation_offload = False  # checkpointed block inputs on the host (offload.py)
        self.offload_stats: dict[str, int] = {}

    @property
    def dim(self) -> int:
        return self.dit.config.num_attention_heads * self.dit.config.attention_head_dim

    @property
    def patch_size(self) -> tuple[int, int, int]:
        p_t, p_h, p_w = self.dit.config.patch_size
        return p_t, p_h, p_w

    # -- gradient checkpointing: the DiT's own switch and checkpoint function -------------------

    def enable_gradient_checkpointing(self) -> None:
        self.dit.enable_gradient_checkpointing()

    def disable_gradient_checkpointing(self) -> None:
        self.dit.disable_gradient_checkpointing()

    @property
    def gradient_checkpointing(self) -> bool:
        return bool(self.dit.gradient_checkpointing)

    def enable_context_parallel(self, cp: ContextParallel | None) -> None:
        """Split every sequence over ``cp``'s group (None: back to the plain forward)."""
        from diffusers.models.transformers.transformer_wan import WanAttnProcessor

        heads = self.dit.config.num_attention_heads
        if cp is not None and heads % cp.size:
            raise ConfigError(
                f"context_parallel={cp.size} must divide the DiT's {heads} attention heads"
            )
        self.cp = cp
        for block in self.dit.blocks:
            block.attn1.set_processor(UlyssesWanAttnProcessor(cp) if cp else WanAttnProcessor())

    # -- sequence construction (SAMA.md 1) --------------------------------------------------------

    def rotary_tables(
        self,
        target_BCTHW: torch.Tensor,
        source_BCTHW: torch.Tensor | None = None,
        num_semantic: int = 0,
    ) -> RotaryTables:
        """RoPE (cos, sin) of [source | semantic | target], each (1, L, 1, Dh).

        Source and target each get the DiT's own 3-D grid starting at frame 0 (no shift), so
        equal-shape source and target get identical tables. Semantic tokens get all-zero tables:
        diffusers rotates q and k as `x * cos + rot(x) * sin`, so a zero table makes their q and
        k exactly zero, as in the released model (complex multiplication by 0 in DiffSynth).
        """
        cos_t, sin_t = self.dit.rope(target_BCTHW)
        cos_parts, sin_parts = [], []
        if source_BCTHW is not None:
            cos_s, sin_s = self.dit.rope(source_BCTHW)
            cos_parts.append(cos_s)
            sin_parts.append(sin_s)
        if num_semantic:
            zeros = cos_t.new_zeros(1, num_semantic, 1, cos_t.shape[-1])
            cos_parts.append(zeros)
            sin_parts.append(zeros)
        cos_parts.append(cos_t)
        sin_parts.append(sin_t)
        return torch.cat(cos_parts, dim=1), torch.cat(sin_parts, dim=1)

    def _patchify(self, video_BCTHW: torch.Tensor) -> torch.Tensor:
        weight = self.dit.patch_embedding.weight
        tokens_BDthw = self.dit.patch_embedding(video_BCTHW.to(weight.dtype))
        return tokens_BDthw.flatten(2).transpose(1, 2)

    def embed_tokens(
        self,
        target_BCTHW: torch.Tensor,
        source_BCTHW: torch.Tensor | None = None,
        semantic_BNS: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, TokenLayout]:
        """Token embeddings of [source | semantic | target] with the type embedding added."""
        type_TD = self.segment_embedding.weight
        parts: list[torch.Tensor] = []
        num_source = num_semantic = 0
        if source_BCTHW is not None:
            source_BLD = self._patchify(source_BCTHW)
            num_source = source_BLD.shape[1]
            parts.append(source_BLD + type_TD[SOURCE])
        if semantic_BNS is not None:
            semantic_BND = self.siglip_feat_mlp(
                semantic_BNS.to(self.siglip_feat_mlp.fc1.weight.dtype)
            )
            num_semantic = semantic_BND.shape[1]
            parts.append(semantic_BND + type_TD[SEMANTIC])
        target_BLD = self._patchify(target_BCTHW)
        parts.append(target_BLD + type_TD[TARGET])
        dtype = parts[-1].dtype
        tokens_BLD = torch.cat([p.to(dtype) for p in parts], dim=1).contiguous()
        p_t, p_h, p_w = self.patch_size
        _, _, t, h, w = target_BCTHW.shape
        grid = (t // p_t, h // p_h, w // p_w)
        return tokens_BLD, TokenLayout(num_source, num_semantic, target_BLD.shape[1], grid)

    # -- forward ---------------------------------------------------------------------------------

    def forward_hidden(
        self,
        noisy_target_BCTHW: torch.Tensor,
        timestep_B: torch.Tensor,
        encoder_hidden_states_BLD: torch.Tensor,
        source_BCTHW: torch.Tensor | None = None,
        semantic_noisy_BNS: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, TokenLayout]:
        """Run the DiT blocks on the joint sequence.

        Returns the final hidden states of every token (B, L, D), the timestep embedding (B, D)
        that drives the output head's AdaLN, and the token layout.
        """
        self._check_inputs(
            noisy_target_BCTHW,
            timestep_B,
            encoder_hidden_states_BLD,
            source_BCTHW,
            semantic_noisy_BNS,
            encoder_attention_mask,
        )
        num_semantic = 0 if semantic_noisy_BNS is None else semantic_noisy_BNS.shape[1]
        rotary = self.rotary_tables(noisy_target_BCTHW, source_BCTHW, num_semantic)
        hidden_BLD, layout = self.embed_tokens(noisy_target_BCTHW, source_BCTHW, semantic_noisy_BNS)
        # Like WanPipeline, feed the text in the embedder's dtype (its output sets temb's dtype).
        text_BLtDt = encoder_hidden_states_BLD.to(
            self.dit.condition_embedder.text_embedder.linear_1.weight.dtype
        )
        if encoder_attention_mask is not None:
            # Wan's convention (diffusers WanPipeline, original Wan): padded text positions are
            # zero vectors that cross-attention still sees; the mask only zeroes them.
            text_BLtDt = text_BLtDt * encoder_attention_mask[..., None].to(text_BLtDt.dtype)
        # One timestep per sample: every token, clean source included, gets the same AdaLN.
        temb_BD, tproj_B6D, text_BLtD, _ = self.dit.condition_embedder(timestep_B, text_BLtDt)
        tproj_B6D = tproj_B6D.unflatten(1, (6, -1))
        if self.cp is not None:  # this rank's tokens from here to the heads
            self.cp.length = hidden_BLD.shape[1]
            hidden_BLD = self.cp.split(hidden_BLD)
            rotary = (self.cp.split(rotary[0]), self.cp.split(rotary[1]))
        for block in self.dit.blocks:
            hidden_BLD = self._run_block(block, hidden_BLD, text_BLtD, tproj_B6D, rotary)
        return hidden_BLD, temb_BD, layout

    def _run_block(self, block, hidden_BLD, text_BLtD, tproj_B6D, rotary) -> torch.Tensor:
        if not (torch.is_grad_enabled() and self.dit.gradient_checkpointing):
            return block(hidden_BLD, text_BLtD, tproj_B6D, rotary)
        ckpt = self.dit._gradient_checkpointing_func
        if not self.activation_offload:
            return ckpt(block, hidden_BLD, text_BLtD, tproj_B6D, rotary)
        with offload_input(hidden_BLD, self.offload_stats):
            return ckpt(block, hidden_BLD, text_BLtD, tproj_B6D, rotary)

    def forward(
        self,
        noisy_target_BCTHW: torch.Tensor,
        timestep_B: torch.Tensor,
        encoder_hidden_states_BLD: torch.Tensor,
        source_BCTHW: torch.Tensor | None = None,
        semantic_noisy_BNS: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Predict the target's velocity (B, C, T, H, W) and the semantic head output (B, N, S).

        `timestep_B` is on Wan's 0..1000 scale (sigma * 1000). `source_BCTHW` None is the "none"
        pretext task / plain text-to-video; `semantic_noisy_BNS` None runs without semantic
        tokens (the second output is then None).
        """
        hidden_BLD, temb_BD, layout = self.forward_hidden(
            noisy_target_BCTHW,
            timestep_B,
            encoder_hidden_states_BLD,
            source_BCTHW,
            semantic_noisy_BNS,
            encoder_attention_mask,
        )
        # The semantic head runs on the raw block outputs, before norm_out: the released code
        # does this, and the head has its own LayerNorm; norm_out's AdaLN is the video head's.
        semantic_BNS = None
        if self.cp is None:
            if layout.num_semantic:
                semantic_BNS = self.semantic_head(hidden_BLD[:, layout.semantic])
            target_BLP = self._head_tokens(hidden_BLD[:, layout.target], temb_BD)
        else:  # per-token heads on this rank's tokens, then every rank's outputs
            if layout.num_semantic:
                semantic_BNS = self.cp.gather(self.semantic_head(hidden_BLD))[:, layout.semantic]
            target_BLP = self.cp.gather(self._head_tokens(hidden_BLD, temb_BD))[:, layout.target]
        return self._unpatchify(target_BLP, layout.target_grid), semantic_BNS

    def _head_tokens(self, target_BLD: torch.Tensor, temb_BD: torch.Tensor) -> torch.Tensor:
        """Wan's AdaLN output head, token by token: ``(B, L, D) -> (B, L, C * patch volume)``.

        SAMA runs the head on all tokens and keeps the last ones; norm_out and proj_out act on
        each token alone, so running them on the target tokens only gives the same numbers.
        """
        dit = self.dit
        shift_B1D, scale_B1D = (dit.scale_shift_table.to(temb_BD.device) + temb_BD[:, None]).chunk(
            2, dim=1
        )
        x_BLD = (dit.norm_out(target_BLD.float()) * (1 + scale_B1D) + shift_B1D).type_as(target_BLD)
        return dit.proj_out(x_BLD)

    def _unpatchify(self, x_BLP: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        p_t, p_h, p_w = self.patch_size
        t, h, w = grid
        x = x_BLP.reshape(x_BLP.shape[0], t, h, w, p_t, p_h, p_w, -1)
        x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)
        return x.flatten(6, 7).flatten(4, 5).flatten(2, 3)

    def _check_inputs(
        self,
        target: torch.Tensor,
        timestep: torch.Tensor,
        text: torch.Tensor,
        source: torch.Tensor | None,
        semantic: torch.Tensor | None,
        mask: torch.Tensor | None,
    ) -> None:
        batch = target.shape[0]
        self._check_video("noisy_target_BCTHW", target, batch)
        if source is not None:
            self._check_video("source_BCTHW", source, batch)
        if timestep.shape != (batch,):
            raise ValueError(f"timestep_B must have shape ({batch},), got {tuple(timestep.shape)}")
        if text.ndim != 3 or text.shape[0] != batch:
            raise ValueError(
                f"encoder_hidden_states_BLD must be ({batch}, L, D), got {tuple(text.shape)}"
            )
        if mask is not None and mask.shape != text.shape[:2]:
            raise ValueError(
                f"encoder_attention_mask must have shape {tuple(text.shape[:2])}, got {tuple(mask.shape)}"
            )
        if semantic is not None:
            n_per = self.config.tokens_per_anchor
            ok = semantic.ndim == 3 and semantic.shape[0] == batch
            ok = ok and semantic.shape[2] == self.config.siglip_dim
            if not ok or semantic.shape[1] == 0 or semantic.shape[1] % n_per:
                raise ValueError(
                    f"semantic_noisy_BNS must be ({batch}, anchors*{n_per}, "
                    f"{self.config.siglip_dim}), got {tuple(semantic.shape)}"
                )

    def _check_video(self, name: str, video: torch.Tensor, batch: int) -> None:
        channels = self.dit.config.in_channels
        if video.ndim != 5 or video.shape[0] != batch or video.shape[1] != channels:
            raise ValueError(
                f"{name} must be ({batch}, {channels}, T, H, W), got {tuple(video.shape)}"
            )
        for size, patch, axis in zip(video.shape[2:], self.patch_size, "THW", strict=True):
            if size % patch:
                raise ValueError(
                    f"{name}: {axis}={size} is not divisible by the patch size {patch}"
                )

    # -- loading and saving ----------------------------------------------------------------------

    @classmethod
    def from_pretrained_dit(
        cls,
        path_or_id: str | Path,
        subfolder: str | None = DIT_SUBFOLDER,
        revision: str | None = None,
        torch_dtype: torch.dtype | None = None,
        config: SamaConfig | None = None,
        init_seed: int = 0,
    ) -> SamaTransformer:
        """A Wan DiT from a diffusers folder or hub id (safetensors only), new modules fresh."""
        dit = WanTransformer3DModel.from_pretrained(
            str(path_or_id),
            subfolder=subfolder,
            revision=revision,
            torch_dtype=torch_dtype,
            use_safetensors=True,
        )
        return cls(dit, config, init_seed=init_seed)

    def new_modules_state_dict(self) -> dict[str, torch.Tensor]:
        """State of the modules SAMA adds to Wan (names as in the released checkpoint)."""
        return {k: v for k, v in self.state_dict().items() if k.split(".", 1)[0] in NEW_MODULES}

    def save_pretrained(self, out_dir: str | Path, max_shard_size: str = "10GB") -> None:
        """Write DIR/transformer (a diffusers Wan DiT), DIR/sama_modules.safetensors and
        DIR/sama_config.json. Not atomic: callers that need that write to a temp dir first."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.dit.save_pretrained(
            out / DIT_SUBFOLDER, safe_serialization=True, max_shard_size=max_shard_size
        )
        tensors = {
            k: v.detach().cpu().contiguous() for k, v in self.new_modules_state_dict().items()
        }
        save_file(tensors, str(out / SAMA_MODULES_FILE), metadata={"format": "pt"})
        text = json.dumps(asdict(self.config), indent=2, sort_keys=True)
        (out / SAMA_CONFIG_FILE).write_text(text + "\n")

    @classmethod
    def load(cls, in_dir: str | Path, torch_dtype: torch.dtype | None = None) -> SamaTransformer:
        """Load a folder written by `save_pretrained`."""
        src = Path(in_dir)
        if not (src / SAMA_CONFIG_FILE).is_file():
            raise FileNotFoundError(
                f"{src} has no {SAMA_CONFIG_FILE}, so it is not a SamaTransformer checkpoint; "
                "load a bare Wan DiT with SamaTransformer.from_pretrained_dit"
            )
        config = SamaConfig.from_dict(json.loads((src / SAMA_CONFIG_FILE).read_text()))
        model = cls.from_pretrained_dit(src, DIT_SUBFOLDER, torch_dtype=torch_dtype, config=config)
        state = load_file(str(src / SAMA_MODULES_FILE))
        expected = set(model.new_modules_state_dict())
        if set(state) != expected:
            raise ValueError(
                f"{src / SAMA_MODULES_FILE}: missing {sorted(expected - set(state))}, "
                f"unexpected {sorted(set(state) - expected)}"
            )
        model.load_state_dict(state, strict=False)
        return model
