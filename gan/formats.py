"""The versions of SafeFakes' files, and the one way older files are read: each loader first brings what it read
to the current version with ``upgrade_checkpoint`` or ``upgrade_export``, so nothing else knows an old layout.

One version number covers both files (a checkpoint and an export written by one SafeFakes share it):

3. The architecture is one dict per network, the fields of ``GeneratorConfig`` and ``DiscriminatorConfig``: a
   checkpoint's ``hyper_parameters.generator`` / ``.critic``, an export's ``architecture.generator``. The step
   guard's counters are ``guard.skipped_steps`` / ``guard.retried_steps``. An export records the box rounding the
   generator was trained with (``conditioning.box_rounding``).
2. The equalized-lr gains and PixelNorm's eps were flat hyper-parameters (``to_rgb_gain``, ``critic_output_gain``,
   ``pixel_norm_eps`` beside ``base_width``); exports had no ``conditioning`` (their runs rounded boxes with the
   module's default, ``floor``, unless their recorded config says otherwise).
1. Trained with gain 1.0 on to_rgb and on the critic's output layer and eps 1e-8, none of them recorded; no retry
   or critic-step counters.

A field added to a config later is absent from older files and takes its default, which must be what older
versions built.
"""

FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)

V1_GENERATOR = {"to_rgb_gain": 1.0, "pixel_norm_eps": 1e-8}
V1_CRITIC = {"output_gain": 1.0}
# Format 2's flat hyper-parameter -> (network, field) of format 3.
V2_ARCHITECTURE = {"base_width": ("generator", "base_width"), "latent_channels": ("generator", "latent_channels"),
                   "to_rgb_gain": ("generator", "to_rgb_gain"), "pixel_norm_eps": ("generator", "pixel_norm_eps"),
                   "minibatch_std": ("critic", "minibatch_std"), "critic_output_gain": ("critic", "output_gain")}
GUARD_BUFFERS = ("skipped_steps", "retried_steps")  # top-level buffers before format 3
V2_BOX_ROUNDING = "floor"  # the training module's default before exports recorded the rule


def check_version(version, where: str, what: str) -> None:
    if version not in READABLE_VERSIONS:
        raise ValueError(f"{where}: SafeFakes {what} format version {version!r}; this SafeFakes reads versions "
                         f"{READABLE_VERSIONS}")


def upgrade_checkpoint(checkpoint: dict, meta: dict) -> dict:
    """Bring a checkpoint (``meta``: its checked ``safefakes`` entry) to ``FORMAT_VERSION`` in place and return it;
    ``meta["upgraded_from"]`` records the version it was written in."""
    version = meta["format_version"]
    if version == FORMAT_VERSION:
        return checkpoint
    import torch  # only format 1's missing counters need it

    hparams, state = checkpoint.setdefault("hyper_parameters", {}), checkpoint.get("state_dict", {})
    networks: dict[str, dict] = {"generator": {}, "critic": {}}
    for flat, (network, field) in V2_ARCHITECTURE.items():
        if flat in hparams:
            networks[network][field] = hparams.pop(flat)
    if version == 1:
        networks["generator"].update(V1_GENERATOR)
        networks["critic"].update(V1_CRITIC)
        if meta.get("kind", "training") == "training":
            for name in ("retried_steps", "critic_steps"):
                state.setdefault(name, torch.zeros((), dtype=torch.int64))
    for name in GUARD_BUFFERS:
        if name in state:
            state[f"guard.{name}"] = state.pop(name)
    if meta.get("kind") == "weights" and not meta.get("has_critic", True):
        networks["critic"] = None
    hparams.update(networks)
    hparams.setdefault("box_rounding", V2_BOX_ROUNDING)
    meta["format_version"], meta["upgraded_from"] = FORMAT_VERSION, version
    return checkpoint


def upgrade_export(description: dict) -> dict:
    """Bring an export's ``generator.json`` (format and version already checked) to ``FORMAT_VERSION`` in place."""
    version = description["format_version"]
    if version == FORMAT_VERSION:
        return description
    arch = description["architecture"]
    generator = {field: arch.pop(field) for field in ("base_width", "latent_channels", "to_rgb_gain", "pixel_norm_eps")
                 if field in arch}
    if version == 1:
        generator.update(V1_GENERATOR)
    arch["generator"] = generator
    model = ((description.get("training_config") or {}).get("model") or {})
    description["conditioning"] = {"box_rounding": model.get("box_rounding", V2_BOX_ROUNDING)}
    description["format_version"], description["upgraded_from"] = FORMAT_VERSION, version
    return description
