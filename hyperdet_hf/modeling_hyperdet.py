"""HyperDet detector: CLIP vision tower + SRM views + hyper-LoRA on the last MLPs + a shared linear head.

This file and the ones it imports relatively (configuration_hyperdet, srm, hyper_lora) are copied next
to saved weights, so ``trust_remote_code=True`` loads a checkpoint where this package is not installed.
Keep imports here relative and flat.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPVisionModelWithProjection, PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_hyperdet import NUM_VIEWS, HyperDetConfig
from .hyper_lora import AdapterState, HyperNetwork, PerTaskLoRA, inject_hyper_lora, mlp_shapes
from .srm import NUM_GROUPS, make_group_view, make_views

LAYERS_PATH = "vision_model.encoder.layers"
ORIGINAL_VIEW = NUM_VIEWS - 1  # 0-based task / column of the unfiltered image


@dataclass
class HyperDetOutput(ModelOutput):
    """Output of HyperDet.

    Args:
        loss: Eq. 9 when labels are given.
        logits: ``(B, 2)`` = ``[0, z]``, so ``softmax(logits)[:, 1] == sigmoid(z)`` with ``z`` the fused
            fake-logit (what the image-classification pipeline reads).
        view_logits: ``(B, 6)`` per-view fake-logits (SRM groups 1..5, then the original); NaN where a
            cascade skipped the view.
        fused_logit: ``(B,)`` the fused fake-logit ``z``.
    """

    loss: Optional[torch.Tensor] = None
    logits: Optional[torch.Tensor] = None
    view_logits: Optional[torch.Tensor] = None
    fused_logit: Optional[torch.Tensor] = None


def hyperdet_loss(view_logits: torch.Tensor, labels: torch.Tensor, loss_alpha: float) -> torch.Tensor:
    """Eq. 9 / Algorithm 1: ``alpha * BCE(z_original) + (1 - alpha) * mean_v BCE(z_v)`` over the five filtered views."""
    z = view_logits.float()
    y = labels.to(z.dtype).view(-1, 1).expand_as(z)
    per_view = F.binary_cross_entropy_with_logits(z, y, reduction="none").mean(0)  # (6,)
    return loss_alpha * per_view[ORIGINAL_VIEW] + (1 - loss_alpha) * per_view[:ORIGINAL_VIEW].mean()


def cascade_fuse(view_logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """Algorithm 2 on computed view logits: ``y = z1 + z6``; for v = 2..5 add ``z_v`` while ``y >= threshold``."""
    y = view_logits[:, 0] + view_logits[:, ORIGINAL_VIEW]
    active = torch.ones_like(y, dtype=torch.bool)
    for v in range(1, NUM_GROUPS):
        active = active & (y >= threshold)
        y = torch.where(active, y + view_logits[:, v], y)
    return y


class HyperDetPreTrainedModel(PreTrainedModel):
    config_class = HyperDetConfig
    config: HyperDetConfig
    base_model_prefix = "hyperdet"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _supports_sdpa = True
    _supports_attention_backend = True
    _no_split_modules = ["CLIPEncoderLayer"]

    @torch.no_grad()
    def _init_weights(self, module):
        # The CLIP backbone is a PreTrainedModel and initialises itself. Only our parts: the B heads of
        # the hypernetwork must stay zero (transformers' default would draw every nn.Linear at random).
        if isinstance(module, (HyperNetwork, PerTaskLoRA)):
            module.reset_parameters()
        elif isinstance(module, HyperDetModel):
            nn.init.normal_(module.classifier.weight, std=0.02)
            nn.init.zeros_(module.classifier.bias)

    def save_pretrained(self, save_directory, *args, **kwargs):
        # One class has one `_auto_class`; write all three entries, named after the module this class
        # was loaded from, so that a model loaded through remote code re-saves correctly.
        modeling = type(self).__module__.rsplit(".", 1)[-1]
        configuration = type(self.config).__module__.rsplit(".", 1)[-1]
        self.config.auto_map = {
            "AutoConfig": f"{configuration}.{type(self.config).__name__}",
            "AutoModel": f"{modeling}.HyperDetModel",
            "AutoModelForImageClassification": f"{modeling}.HyperDetForImageClassification",
        }
        kwargs.setdefault("safe_serialization", True)
        if not kwargs["safe_serialization"]:
            raise ValueError("HyperDet saves safetensors only (safe_serialization=False is refused)")
        return super().save_pretrained(save_directory, *args, **kwargs)

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """As transformers', but never unpickles, and refuses a checkpoint with missing or unexpected weights."""
        if kwargs.get("use_safetensors") is False:
            raise ValueError("HyperDet loads safetensors only (use_safetensors=False is refused)")
        kwargs["use_safetensors"] = True
        want_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        problems = {k: sorted(v) for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
        if problems:
            source = args[0] if args else kwargs.get("pretrained_model_name_or_path")
            detail = "; ".join(f"{k}: {v[:8]}{' ...' if len(v) > 8 else ''}" for k, v in problems.items())
            raise ValueError(
                f"{source} is not a complete {cls.__name__} checkpoint ({detail}). Refusing to run with "
                "randomly initialised weights; check that the folder holds a HyperDet model with this config."
            )
        return (model, info) if want_info else model


class HyperDetModel(HyperDetPreTrainedModel):
    """The detector's body: backbone (``.backbone``), hypernetwork (``.hyper_lora``), head (``.classifier``).

    Its forward already gives the detector's outputs (``logits``, ``view_logits``, ``loss``), so
    ``AutoModel`` and ``AutoModelForImageClassification`` answer the same. The baselines of the demo
    are the same class with ``adapter_type`` ``"lora"``/``"none"`` and ``view_source="original"``.
    """

    def __init__(self, config: HyperDetConfig):
        super().__init__(config)
        vision_config = config.vision_config
        self.backbone = CLIPVisionModelWithProjection._from_config(vision_config)
        self.backbone.requires_grad_(False)
        positions = list(config.target_modules)
        shapes = mlp_shapes(self.backbone, config.tuned_layers, positions, LAYERS_PATH)
        if config.adapter_type == "hyper":
            self.hyper_lora = HyperNetwork(
                NUM_VIEWS, config.tuned_layers, shapes, config.lora_rank, config.hyper_embedding_dim, config.hyper_hidden_dim
            )
        elif config.adapter_type == "lora":
            self.hyper_lora = PerTaskLoRA(NUM_VIEWS, config.tuned_layers, shapes, config.lora_rank)
        else:
            self.hyper_lora = None
        self.classifier = nn.Linear(vision_config.projection_dim, 1)
        self._adapter_state = None
        # Blocks before the first tuned one need no graph; False only to measure the naive alternative.
        self.prefix_without_autograd = True
        if self.hyper_lora is not None:
            # Shared, unregistered state: the layers reach the hypernetwork through it, so it is saved once.
            self._adapter_state = AdapterState(self.hyper_lora, config.lora_scaling, default_task=ORIGINAL_VIEW)
            inject_hyper_lora(self.backbone, self._adapter_state, config.tuned_layers, positions, LAYERS_PATH)
            # A direct call of the backbone is one forward too (our own passes go through `encode`).
            self.backbone.register_forward_pre_hook(self._adapter_state.begin_forward)
        self.post_init()

    # -- views and per-view logits ------------------------------------------------------------------
    def make_views(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (6B, C, H, W)`` view-major: SRM groups 1..5, then ``pixel_values``
        (six copies of ``pixel_values`` for ``view_source="original"``)."""
        if self.config.view_source == "original":
            return pixel_values.to(self.dtype).repeat(NUM_VIEWS, 1, 1, 1)
        return make_views(pixel_values, self.config.srm_scale, self.config.srm_clamp, dtype=self.dtype)

    def make_view(self, pixel_values: torch.Tensor, view: int) -> torch.Tensor:
        """One view (0-based) of a batch, for the cascade."""
        if view == ORIGINAL_VIEW or self.config.view_source == "original":
            return pixel_values.to(self.dtype)
        return make_group_view(pixel_values, view, self.config.srm_scale, self.config.srm_clamp, self.dtype)

    def _layout(self, tasks):
        return self._adapter_state.use_layout(tasks) if self._adapter_state is not None else contextlib.nullcontext()

    def encode(self, images: torch.Tensor, tasks) -> torch.Tensor:
        """Projected CLIP embeddings of a view-major batch, each block of rows with its task's adapters.

        The blocks before the first tuned one do not depend on any adapter: they run without autograd.
        """
        vision = self.backbone.vision_model
        first_tuned = min(self.config.tuned_layers)
        prefix_context = torch.no_grad() if self.prefix_without_autograd else contextlib.nullcontext()
        if self._adapter_state is not None:
            self._adapter_state.begin_forward()
        with self._layout(tasks):
            with prefix_context:
                hidden = vision.embeddings(images.to(self.dtype))
                hidden = vision.pre_layrnorm(hidden)
                for layer in vision.encoder.layers[:first_tuned]:
                    hidden = layer(hidden, None)
            for layer in vision.encoder.layers[first_tuned:]:
                hidden = layer(hidden, None)
            pooled = vision.post_layernorm(hidden[:, 0, :])
            return self.backbone.visual_projection(pooled)

    def logits_for(self, images: torch.Tensor, tasks) -> torch.Tensor:
        """Scalar fake-logits ``(N,)`` of a view-major batch."""
        return self.classifier(self.encode(images, tasks)).squeeze(-1).float()

    def all_view_logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B, 6)`` logits of all six views, computed in one batched pass."""
        b = pixel_values.shape[0]
        if self._adapter_state is None and self.config.view_source == "original":
            # six identical views through an unadapted backbone: compute once (UnivFD's linear probe)
            return self.logits_for(pixel_values, (ORIGINAL_VIEW,)).unsqueeze(1).expand(b, NUM_VIEWS).contiguous()
        z = self.logits_for(self.make_views(pixel_values), tuple(range(NUM_VIEWS)))
        return z.view(NUM_VIEWS, b).T

    def cascade_view_logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Algorithm 2 computing only what it needs: views 1 and 6 for all images, then view v only for
        the images still above the threshold. Skipped views are NaN."""
        b = pixel_values.shape[0]
        z = torch.full((b, NUM_VIEWS), float("nan"), device=pixel_values.device)
        first = torch.cat([self.make_view(pixel_values, 0), self.make_view(pixel_values, ORIGINAL_VIEW)])
        z01 = self.logits_for(first, (0, ORIGINAL_VIEW)).view(2, b)
        z[:, 0], z[:, ORIGINAL_VIEW] = z01[0], z01[1]
        y = z01[0] + z01[1]
        active = torch.arange(b, device=pixel_values.device)
        for v in range(1, NUM_GROUPS):
            active = active[y[active] >= self.config.cascade_threshold]
            if active.numel() == 0:
                break
            view = self.make_view(pixel_values[active], v)
            zv = self.logits_for(view, (v,))
            z[active, v] = zv
            y = y.index_add(0, active, zv)
        return z

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: Optional[torch.Tensor] = None,
        return_dict: Optional[bool] = None,
        **kwargs,
    ) -> HyperDetOutput:
        if pixel_values is None or pixel_values.dim() != 4:
            raise ValueError("pixel_values must be a (B, C, H, W) tensor")
        cascade = self.config.fusion == "cascade"
        if cascade and labels is None:
            view_logits = self.cascade_view_logits(pixel_values)
        else:
            view_logits = self.all_view_logits(pixel_values)
        if cascade:
            fused = cascade_fuse(torch.nan_to_num(view_logits, nan=0.0), self.config.cascade_threshold)
        else:
            fused = view_logits.mean(1)
        loss = None if labels is None else hyperdet_loss(view_logits, labels, self.config.loss_alpha)
        logits = torch.stack([torch.zeros_like(fused), fused], dim=1)
        out = HyperDetOutput(loss=loss, logits=logits, view_logits=view_logits, fused_logit=fused)
        if return_dict is False:
            return out.to_tuple()
        return out


class HyperDetForImageClassification(HyperDetPreTrainedModel):
    """HyperDet as an image classifier (labels ``real``/``fake``), for ``pipeline("image-classification")``."""

    def __init__(self, config: HyperDetConfig):
        super().__init__(config)
        self.hyperdet = HyperDetModel(config)
        self.post_init()

    def forward(self, pixel_values: torch.Tensor, labels: Optional[torch.Tensor] = None, return_dict=None, **kwargs):
        return self.hyperdet(pixel_values=pixel_values, labels=labels, return_dict=return_dict)

    @classmethod
    def from_clip(cls, name_or_path: str | os.PathLike, **config_overrides) -> "HyperDetForImageClassification":
        """A new detector whose backbone weights come from a pretrained CLIP checkpoint.

        ``name_or_path`` is a Hub id or a local folder holding a ``CLIPModel`` or a
        ``CLIPVisionModelWithProjection``. A bare ``CLIPVisionModel`` has no ``visual_projection``, which
        the head reads, so it is refused rather than run on a random projection.
        """
        clip, info = CLIPVisionModelWithProjection.from_pretrained(name_or_path, output_loading_info=True)
        missing = set(info.get("missing_keys", ()))
        if "visual_projection.weight" in missing:
            raise ValueError(
                f"{name_or_path} has no visual_projection (a bare CLIPVisionModel checkpoint?). HyperDet's head "
                "reads CLIP's projected 768-d features; give a CLIPModel or CLIPVisionModelWithProjection checkpoint."
            )
        if missing:
            raise ValueError(f"{name_or_path} is missing CLIP vision weights: {sorted(missing)[:8]}")
        vision_config = clip.config.to_dict()
        config = HyperDetConfig(vision_config=vision_config, **config_overrides)
        model = cls(config)
        source = clip.state_dict()
        target = model.hyperdet.backbone
        own = target.state_dict()
        remapped = {}
        for key, value in source.items():
            wrapped = key.rsplit(".", 1)
            wrapped = f"{wrapped[0]}.base_layer.{wrapped[1]}" if len(wrapped) == 2 else key
            remapped[key if key in own else wrapped] = value
        result = target.load_state_dict(remapped, strict=True)
        assert not result.missing_keys and not result.unexpected_keys
        model.config.name_or_path = str(name_or_path)
        return model


HyperDetConfig.register_for_auto_class("AutoConfig")
HyperDetModel.register_for_auto_class("AutoModel")
HyperDetForImageClassification.register_for_auto_class("AutoModelForImageClassification")

__all__ = ["HyperDetForImageClassification", "HyperDetModel", "HyperDetOutput", "HyperDetPreTrainedModel"]
