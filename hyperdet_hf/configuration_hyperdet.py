"""`HyperDetConfig`: the paper's setting as defaults, validated at construction."""

from __future__ import annotations

from transformers import CLIPVisionConfig, PretrainedConfig
from transformers.configuration_utils import SubConfigSpec

# CLIP ViT-L/14 (openai/clip-vit-large-patch14), the paper's backbone.
VIT_L14_VISION = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "patch_size": 14,
    "image_size": 224,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
}

NUM_VIEWS = 6  # five SRM groups, then the original image
FUSIONS = ("mean", "cascade")
ADAPTER_TYPES = ("hyper", "lora", "none")
VIEW_SOURCES = ("srm", "original")
MLP_POSITIONS = ("fc1", "fc2")


class HyperDetConfig(PretrainedConfig):
    r"""Configuration of a HyperDet detector.

    Args:
        vision_config: the CLIP vision tower (default CLIP ViT-L/14).
        lora_rank: rank of every generated LoRA (paper: 16).
        lora_alpha: LoRA scaling numerator; default equal to ``lora_rank`` (scaling 1).
        tuned_layers: 0-based encoder blocks whose MLPs get hyper-LoRA; default the last 8 blocks.
            Stored sorted; the layer embedding of block ``tuned_layers[j]`` is row ``j``.
        target_modules: MLP positions to adapt, a subset of ``["fc1", "fc2"]``.
        loss_alpha: weight of the original view in Eq. 9 (paper: 0.1).
        fusion: ``"mean"`` (average of the six view logits) or ``"cascade"`` (Algorithm 2).
        cascade_threshold: early-exit threshold of the cascade.
        hyper_embedding_dim: size of the task, layer and position embeddings.
        hyper_hidden_dim: hidden width of the hypernetwork's source MLP.
        srm_scale, srm_clamp: a filtered view is ``hardtanh(srm_scale * residual, -srm_clamp, srm_clamp)``;
            residuals of CLIP-normalised photos have a std near 0.1, so scale 8 brings them near unit std.
        adapter_type: ``"hyper"`` (HyperDet), or a baseline: ``"lora"`` (independent LoRA per view, no
            hypernetwork) or ``"none"`` (frozen CLIP + linear head, UnivFD-style).
        view_source: ``"srm"`` (HyperDet) or ``"original"`` (every view is the unfiltered image: the
            "without SRM" ablation; with ``adapter_type="none"`` this is UnivFD's linear probe).
    """

    model_type = "hyperdet"
    sub_configs_defaults = {"vision_config": SubConfigSpec(CLIPVisionConfig, init_kwargs=VIT_L14_VISION)}

    vision_config: dict | CLIPVisionConfig | None = None
    lora_rank: int = 16
    lora_alpha: float | None = None
    tuned_layers: list[int] | None = None
    target_modules: list[str] | None = None
    loss_alpha: float = 0.1
    fusion: str = "mean"
    cascade_threshold: float = 0.0
    hyper_embedding_dim: int = 64
    hyper_hidden_dim: int = 128
    srm_scale: float = 8.0
    srm_clamp: float = 3.0
    adapter_type: str = "hyper"
    view_source: str = "srm"

    def __post_init__(self, **kwargs):
        if self.id2label is None:
            self.id2label = {0: "real", 1: "fake"}
            self.label2id = {"real": 0, "fake": 1}
        super().__post_init__(**kwargs)
        num_layers = self.vision_config.num_hidden_layers
        if self.tuned_layers is None:
            self.tuned_layers = list(range(max(0, num_layers - 8), num_layers))
        if self.target_modules is None:
            self.target_modules = list(MLP_POSITIONS)
        if self.lora_alpha is None:
            self.lora_alpha = self.lora_rank
        self._validate(num_layers)
        self.tuned_layers = sorted(int(i) for i in self.tuned_layers)
        self.target_modules = list(self.target_modules)

    def _validate(self, num_layers: int) -> None:
        def fail(field: str, why: str):
            raise ValueError(f"HyperDetConfig.{field}: {why}")

        layers = self.tuned_layers
        if isinstance(layers, (str, bytes)) or not hasattr(layers, "__iter__"):
            fail("tuned_layers", f"must be a list of block indices, got {layers!r}")
        layers = list(layers)
        if not layers:
            fail("tuned_layers", "must name at least one block")
        if any(isinstance(i, bool) or not isinstance(i, int) for i in layers):
            fail("tuned_layers", f"must hold integers, got {layers!r}")
        if len(set(layers)) != len(layers):
            fail("tuned_layers", f"has repeated blocks: {layers!r}")
        bad = [i for i in layers if not 0 <= i < num_layers]
        if bad:
            fail("tuned_layers", f"{bad} out of range for a backbone of {num_layers} blocks (0..{num_layers - 1})")
        if isinstance(self.lora_rank, bool) or not isinstance(self.lora_rank, int) or self.lora_rank < 1:
            fail("lora_rank", f"must be an integer >= 1, got {self.lora_rank!r}")
        if not isinstance(self.lora_alpha, (int, float)) or self.lora_alpha <= 0:
            fail("lora_alpha", f"must be a positive number, got {self.lora_alpha!r}")
        targets = self.target_modules
        if isinstance(targets, str):
            fail("target_modules", f"must be a list such as ['fc1', 'fc2'], got the string {targets!r}")
        targets = list(targets)
        if not targets:
            fail("target_modules", "must name at least one of 'fc1', 'fc2'")
        unknown = [t for t in targets if t not in MLP_POSITIONS]
        if unknown:
            fail("target_modules", f"unknown module(s) {unknown}; choose from {list(MLP_POSITIONS)}")
        if len(set(targets)) != len(targets):
            fail("target_modules", f"has repeated entries: {targets!r}")
        if not isinstance(self.loss_alpha, (int, float)) or not 0.0 <= self.loss_alpha <= 1.0:
            fail("loss_alpha", f"must lie in [0, 1], got {self.loss_alpha!r}")
        if self.fusion not in FUSIONS:
            fail("fusion", f"unknown fusion {self.fusion!r}; choose from {list(FUSIONS)}")
        if self.adapter_type not in ADAPTER_TYPES:
            fail("adapter_type", f"unknown adapter type {self.adapter_type!r}; choose from {list(ADAPTER_TYPES)}")
        if self.view_source not in VIEW_SOURCES:
            fail("view_source", f"unknown view source {self.view_source!r}; choose from {list(VIEW_SOURCES)}")
        if not isinstance(self.cascade_threshold, (int, float)):
            fail("cascade_threshold", f"must be a number, got {self.cascade_threshold!r}")
        for name in ("hyper_embedding_dim", "hyper_hidden_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                fail(name, f"must be an integer >= 1, got {value!r}")
        for name in ("srm_scale", "srm_clamp"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value <= 0:
                fail(name, f"must be a positive number, got {value!r}")

    @property
    def lora_scaling(self) -> float:
        return float(self.lora_alpha) / self.lora_rank


__all__ = ["HyperDetConfig", "NUM_VIEWS", "VIT_L14_VISION"]
