"""The forensic test-time image processor: CLIP mean/std, center crop 224, no resize.

Resizing destroys the upsampling traces a detector reads (NPR issue 23), so the field evaluates on a
center crop of the image as it is (UnivFD, CNNDetection); images smaller than the crop are zero-padded
by the processor. The PIL backend keeps numbers independent of torchvision.
"""

from __future__ import annotations

from transformers import CLIPImageProcessorPil

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def default_image_processor(crop_size: int = 224) -> CLIPImageProcessorPil:
    """CLIP normalisation, ``crop_size`` center crop, no resize, RGB conversion; pipeline-ready when saved."""
    return CLIPImageProcessorPil(
        do_resize=False,
        do_center_crop=True,
        crop_size={"height": crop_size, "width": crop_size},
        do_rescale=True,
        do_normalize=True,
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
        do_convert_rgb=True,
    )
