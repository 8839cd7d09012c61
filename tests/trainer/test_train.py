"""The training loop on the tiny bundle: overfit, configs, provenance, stage 1, validation.

Every run goes through ``configs/debug_cpu.yaml`` and the real entry points (``train``,
``train_main``), with the tiny random-weight models loaded by ``from_pretrained``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import pytest
import torch
import yaml

from sama.config import load_config
from sama.errors import ConfigError
from tests.trainer.conftest import CONFIG_DIR, debug_overrides
from tests.trainer.trainer_fixtures import tiny_provenance, write_train_shards
from trainer import checkpoint as ckpt_io
from trainer.config import TrainConfig, load_train_config
from trainer.distributed import init_distributed
from trainer.train import build, train, train_main

DEBUG = CONFIG_DIR / "debug_cpu.yaml"


def cfg_for(tiny_models, root, out, *extra) -> TrainConfig:
    return load_train_config(DEBUG, debug_overrides(tiny_models, root, out, *extra))


def test_loss_is_finite_and_falls_when_overfitting(tmp_path, tiny_models):
    """2 clips + 2 image pairs, 150 steps: the loss of the last steps is well below the first."""
    root = write_train_shards(tmp_path / "data", tiny_models, clips=2, image_pairs=2)
    cfg = cfg_for(
        tiny_models,
        root,
        tmp_path / "run",
        "steps=150",
        "log_every=1",
        "ckpt_every=0",
        "optim.lr=1e-2",
    )
    history = train(cfg)["history"]
    losses = [r["loss"] for r in history]
    assert len(losses) == 150 and all(torch.isfinite(torch.tensor(losses)))
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < 0.9 * first, (first, last)
    assert all(0.0 <= r["data_wait_share"] <= 1.0 for r in history)


def test_run_writes_config_log_and_checkpoint(tmp_path, tiny_models, train_root):
    out = tmp_path / "run"
    rc = train_main(
        [
            str(DEBUG),
            *debug_overrides(
                tiny_models, train_root, out, "steps=3", "log_every=1", "ckpt_every=2"
            ),
        ]
    )
    assert rc == 0
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["data"]["root"] == ""  # expanded into sources, reloadable as is
    assert [s["kind"] for s in resolved["data"]["sources"]] == ["pairs", "clips"]
    assert resolved["dit"]["model_id"] == f"{tiny_models}/wan"
    again = load_config(TrainConfig, out / "config.yaml")
    assert again.data.sources[0].media == "image"
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
    assert {"loss", "fm", "sem", "lr", "grad_norm", "samples_per_s", "data_wait_share"} <= set(
        log[0]
    )
    latest = ckpt_io.latest_checkpoint(out)
    assert latest is not None and latest.name == "step_00000003"
    assert {p.name for p in latest.iterdir()} >= {
        ".metadata",
        "state.json",
        "config.yaml",
        "model_config.json",
        "rank0.json",
    }
    # the same output_dir cannot silently continue as another stage
    stage1 = cfg_for(tiny_models, train_root, out, "stage=1", "data.root_kinds=[clips]")
    with pytest.raises(ConfigError, match="holds a stage-0 run"):
        train(stage1)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr=-1", "optim.lr must be > 0"),
        ("stage=2", "stage"),
        ("flow.sampling=beta", "flow.sampling"),
        ("ema_decay=1.0", "ema_decay"),
        ("optim.warmpu_steps=3", "Did you mean 'warmup_steps'"),
        ("data.sources=[{uri: x, kind: clips}]", "not both"),
        ("data.root_kinds=[videos]", "root_kinds"),
    ],
)
def test_bad_config_fails_at_start(tmp_path, tiny_models, train_root, override, message):
    with pytest.raises(ConfigError, match=message):
        cfg_for(tiny_models, train_root, tmp_path / "run", override)


def test_models_dir_placeholder_needs_models_dir(tmp_path):
    with pytest.raises(ConfigError, match="models_dir"):
        load_train_config(DEBUG, ["models_dir=", f"output_dir={tmp_path}"])


def test_shards_built_for_other_models_are_refused(tmp_path, tiny_models):
    root = str(tmp_path / "data")
    from tests.fakes import make_fake_clip_rows, write_fake_shard

    prov = tiny_provenance(tiny_models, "clips")
    prov["vae"] = {**prov["vae"], "config_hash": "another-vae"}
    write_fake_shard(root, "clips", "c0", make_fake_clip_rows(4, channels=16, siglip_dim=32), prov)
    cfg = cfg_for(tiny_models, root, tmp_path / "run", "steps=1")
    with pytest.raises(ConfigError, match="VAE config"):
        train(cfg)


def test_stage1_starts_from_stage0_checkpoint_and_samples(tmp_path, tiny_models):
    """Stage 0 (clips, pretext) -> stage 1 (image + video pairs, no stored text embeddings:
    prompts encoded online) initialised from the stage-0 EMA weights; validation writes a PNG."""
    root = write_train_shards(
        tmp_path / "data", tiny_models, clips=4, image_pairs=4, video_pairs=4, text=False
    )
    s0 = tmp_path / "stage0"
    train(cfg_for(tiny_models, root, s0, "steps=2", "ema_decay=0.5"))
    stage0 = ckpt_io.latest_checkpoint(s0)
    ema0 = ckpt_io.load_full(stage0, "ema")
    model0 = ckpt_io.load_full(stage0, "model")
    assert any(not torch.equal(ema0[k], model0[k]) for k in ema0)

    extra = (
        "stage=1",
        f"init_from={s0}",
        "steps=2",
        "validation.enabled=true",
        "validation.steps=2",
        "validation.num_samples=1",
    )
    cfg = cfg_for(tiny_models, root, tmp_path / "stage1", *extra)
    assert {(s.kind, s.media) for s in cfg.data.sources} == {("pairs", "image"), ("pairs", "video")}
    run = build(cfg, init_distributed("none", "cpu"))
    state = run.core.state_dict()
    assert all(torch.equal(state[k], ema0[k]) for k in ema0)  # init_weights=ema
    assert all(torch.equal(s, ema0[n]) for n, s in run.ema.state_dict().items())

    result = train(cfg)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in result["history"])
    assert result["online_prompts"] > 0  # no stored embeddings: umT5 ran online
    pngs = list((tmp_path / "stage1" / "validation").glob("*.png"))
    assert [p.name for p in pngs] == ["step_00000002_0.png"]


def test_stage1_init_from_missing_checkpoint_fails(tmp_path, tiny_models, train_root):
    cfg = cfg_for(
        tiny_models,
        train_root,
        tmp_path / "run",
        "stage=1",
        f"init_from={tmp_path / 'nothing'}",
        "data.root_kinds=[image_pairs]",
    )
    with pytest.raises(ConfigError, match="does not exist"):
        train(cfg)
    (tmp_path / "empty_run" / "checkpoints").mkdir(parents=True)
    cfg = dataclasses.replace(cfg, init_from=str(tmp_path / "empty_run"))
    with pytest.raises(ConfigError, match="holds no checkpoint"):
        train(cfg)


def test_resolved_paths_follow_models_dir(tmp_path, tiny_models, train_root):
    cfg = cfg_for(tiny_models, train_root, tmp_path)
    assert cfg.vae.model_id == f"{tiny_models}/wan"
    assert cfg.siglip.model_id == f"{tiny_models}/siglip"
    assert Path(cfg.text_encoder.model_id).name == "wan"


@pytest.mark.parametrize("name", ["stage0", "stage1"])
def test_paper_configs_carry_the_paper_settings(name):
    cfg = load_config(TrainConfig, CONFIG_DIR / f"{name}.yaml", ["data.root=s3://bucket/ds"])
    assert cfg.stage == int(name[-1])
    assert (
        cfg.dit.model_id == "Wan-AI/Wan2.1-T2V-14B-Diffusers" and cfg.dit.subfolder == "transformer"
    )
    assert cfg.siglip.model_id == "google/siglip-so400m-patch14-384"
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.grad_clip) == (2e-5, 0.01, 1.0)
    assert (cfg.ema_decay, cfg.sem_loss_weight, cfg.precision) == (0.9998, 0.1, "bf16")
    assert (cfg.flow.shift, cfg.validation.steps, cfg.validation.guidance) == (5.0, 50, 5.0)
    # one 65,585-token video per GPU step; the paper's 448 + 112 by accumulation (SAMA.md 4)
    assert (cfg.data.image_batch_size, cfg.data.video_batch_size) == (8, 1)
    assert (cfg.optim.global_images, cfg.optim.global_videos) == (448, 112)
    assert cfg.video_loss_share == 0.5 and cfg.distributed == "fsdp"
    assert cfg.gradient_checkpointing and cfg.plan.world_size == 56
    assert cfg.pretext.mix == {"none": 1, "cube_inpainting": 2, "speed": 3, "tube_shuffle": 4}
    assert cfg.data.image_min_scores == {"if": 9, "vq": 9, "cp": 9}


def test_no_data_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no training data"):
        load_train_config(CONFIG_DIR / "stage0.yaml")


def test_validation_sampler(tiny_models):
    """Euler + CFG: deterministic given the generator; CFG with identical branches is a no-op;
    the sigmas run from 1 to 0 through Wan's shift."""
    from trainer.model import SamaTransformer
    from trainer.sama_modules import SamaConfig
    from trainer.sampling import Conditioning, sample_edit, sampling_sigmas

    sig = sampling_sigmas(4, 5.0)
    assert sig[0] == 1 and sig[-1] == 0 and (sig.diff() < 0).all()
    model = SamaTransformer.from_pretrained_dit(
        f"{tiny_models}/wan", config=SamaConfig(siglip_dim=32, mlp_hidden=16)
    )
    g = torch.Generator().manual_seed(0)
    cond = Conditioning(torch.randn(1, 5, 32, generator=g))
    other = Conditioning(torch.randn(1, 5, 32, generator=g))
    source = torch.randn(1, 16, 3, 4, 6, generator=g)

    def run(uncond, guidance, seed=1):
        gen = torch.Generator().manual_seed(seed)
        return sample_edit(
            model,
            (1, 16, 3, 4, 6),
            cond,
            uncond,
            source,
            65,
            32,
            gen,
            steps=3,
            shift=5.0,
            guidance=guidance,
        )

    a, sem_a = run(None, 1.0)
    b, _ = run(None, 1.0)
    assert torch.equal(a, b) and a.shape == (1, 16, 3, 4, 6) and sem_a.shape == (1, 65, 32)
    same, _ = run(cond, 5.0)
    assert torch.allclose(same, a, atol=1e-5)
    guided, _ = run(other, 5.0)
    assert not torch.allclose(guided, a)


def test_groups_of_different_source_shapes_give_the_batch_mean(tmp_path, tiny_models, train_root):
    """A stage-0 clip batch mixes source lengths (2x speed halves the frames, ``none`` may have
    no source); one forward per group weighted by its share equals the per-sample mean."""
    from trainer.inputs import group_by_source, pad_text
    from trainer.losses import sama_loss
    from trainer.step import forward_backward

    cfg = cfg_for(
        tiny_models,
        train_root,
        tmp_path,
        "pretext.none_source=none",
        "pretext.mix={none: 1, speed: 1, tube_shuffle: 1}",
        "data.num_workers=0",
    )
    run = build(cfg, init_distributed("none", "cpu"))
    mixed = (b for b in itertools.islice(run.loader, 40) if len(group_by_source(b)) > 1)
    batch = next(mixed, None)
    assert batch is not None, "no batch with two source shapes in 40 batches"
    forward_backward(run, [batch])
    grads = {n: p.grad.clone() for n, p in run.core.named_parameters()}
    run.core.zero_grad()
    n = len(batch["rng_id"])
    for g in group_by_source(batch):
        for j in range(len(g.indices)):
            text, mask = pad_text([g.text[j]], cfg.text_pad_tokens)
            src = None if g.source_BCTHW is None else g.source_BCTHW[j : j + 1]
            terms = sama_loss(
                run.core,
                g.target_BCTHW[j : j + 1],
                text,
                mask,
                g.t_B[j : j + 1],
                g.noise_BCTHW[j : j + 1],
                src,
                g.anchors_BNS[j : j + 1],
                g.semantic_noise_BNS[j : j + 1],
            )
            (terms.total_B.sum() / n).backward()
    for name, p in run.core.named_parameters():
        assert torch.allclose(p.grad, grads[name], atol=1e-6, rtol=1e-4), name


def test_print_config_shows_every_default(capsys):
    assert train_main([str(CONFIG_DIR / "stage0.yaml"), "--print-config", "optim.lr=1e-5"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    from sama.config import to_dict

    want = to_dict(load_config(TrainConfig, CONFIG_DIR / "stage0.yaml", ["optim.lr=1e-5"]))
    assert printed == want  # every field, defaults included, data.root left as given
    assert printed["plan"]["gpu_memory_gb"] == 80 and printed["flow"]["loss_weighting"] == "none"
    assert printed["optim"]["lr"] == 1e-5 and printed["context_parallel"] == 1


def test_loss_weighting_is_applied_and_recorded(tmp_path, tiny_models, train_root):
    out = tmp_path / "run"
    history = train(
        cfg_for(
            tiny_models, train_root, out, "steps=2", "log_every=1", "flow.loss_weighting=diffsynth"
        )
    )["history"]
    assert (
        yaml.safe_load((out / "config.yaml").read_text())["flow"]["loss_weighting"] == "diffsynth"
    )
    assert any(abs(r["loss"] - (r["fm"] + 0.1 * r["sem"])) > 1e-3 for r in history)
