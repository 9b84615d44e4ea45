"""Train with LAD inside TRL's GRPOTrainer: a tiny random Llama on CPU, built offline, in about a minute.

    make env-trl                                  # or: pip install torch 'ladsim[trl]'
    .venv-trl/bin/python examples/trl_lad.py

Switching a TRL GRPO script to LAD is one class: ``GRPOTrainer`` -> ``LadsimGRPOTrainer``, with TRL's own
``GRPOConfig`` unchanged; LAD's ``eta`` and ``div`` are optional keywords of the trainer (defaults: practical
LAD, ``eta = 1``, JS). With a real model, pass its name or the loaded model and its tokenizer as usual; the tiny
model and tokenizer here only keep the example offline and fast.
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from trl import GRPOConfig

from ladsim.integrations.trl import LadsimGRPOTrainer

WORDS = ["a", "b", "c", "d", "e", "f", "g", "h", "yes", "no"]


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {w: i for i, w in enumerate(["<pad>", "<eos>", "<unk>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def tiny_llama(tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.eos_token_id)
    return LlamaForCausalLM(config)


def reward_yes(completions, **kwargs) -> list[float]:
    """1 per 'yes' in the completion."""
    return [float(c.split().count("yes")) for c in completions]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output-dir", default=None, help="trainer output (default: a temporary directory)")
    parser.add_argument("--steps", type=int, default=3)
    cli = parser.parse_args()
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    dataset = Dataset.from_dict({"prompt": [" ".join(WORDS[(i + k) % 8] for k in range(3)) for i in range(8)]})
    args = GRPOConfig(                                      # TRL's own config, as in any GRPO script
        output_dir=cli.output_dir or tempfile.mkdtemp(prefix="trl_lad_"),
        loss_type="dapo",                                   # TRL's aggregation (grpo, bnpo, dr_grpo or dapo)
        per_device_train_batch_size=4, num_generations=4, gradient_accumulation_steps=2,
        max_completion_length=6, max_steps=cli.steps, learning_rate=1e-2, logging_steps=1,
        use_cpu=True, bf16=False, report_to="none", save_strategy="no", seed=0,
    )
    trainer = LadsimGRPOTrainer(model=tiny_llama(tokenizer), reward_funcs=[reward_yes], args=args,
                                train_dataset=dataset, processing_class=tokenizer,
                                eta=0.5, div="js")          # ladsim: optional (defaults: LAD, eta 1, JS)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "ladsim/loss" in h]
    for h in logs:
        print(f"step {h['step']}: loss {h['loss']:.4f}  "
              f"reward {h['reward']:.3f}  entropy {h['entropy']:.3f}")
    lad = trainer.ladsim_params
    print(f"trained {len(logs)} steps with LAD (eta={lad.eta}, div={lad.div})")


if __name__ == "__main__":
    main()
