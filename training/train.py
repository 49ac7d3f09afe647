"""Train HyperDet (CLIP ViT-L/14 + SRM views + hypernetwork LoRA) with Accelerate.

    accelerate launch training/train.py --config training/configs/hyperdet_vitl14_progan.yaml \
        --train_data data/progan_train --val_data data/progan_val --output_dir outputs/hyperdet
    torchrun --nproc_per_node 2 training/train.py --config ... (several processes, CPU or GPU)
    python training/train.py --config training/configs/hyperdet_tiny_cpu.yaml --train_data TOY --output_dir OUT

Any setting of the YAML file can be overridden (``--max_steps 100``, ``--model.lora_rank 8``);
``--resume_from_checkpoint latest`` continues a killed run; ``--help`` lists every setting.
The logic lives in ``hyperdet_hf.training``.
"""

from hyperdet_hf.training import main

if __name__ == "__main__":
    raise SystemExit(main())
