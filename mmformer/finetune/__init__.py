"""Fine-tuning from pretrained weights: LoRA, freezing, layer-wise lr decay and loading by module prefix.

Plain ``nn.Module`` tools (no Lightning); :class:`mmformer.tasks.finetuning.FineTuning` applies them to a
task from a recipe.
"""

from mmformer.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "FineTuneConfig": "mmformer.finetune.setup", "apply_finetune": "mmformer.finetune.setup",
    "LoRAConfig": "mmformer.finetune.lora", "LoRALinear": "mmformer.finetune.lora",
    "inject_lora": "mmformer.finetune.lora", "merge_lora": "mmformer.finetune.lora",
    "freeze": "mmformer.finetune.freeze", "count_trainable": "mmformer.finetune.freeze",
    "layer_scales": "mmformer.finetune.lr_decay", "load_pretrained": "mmformer.finetune.pretrained",
})
