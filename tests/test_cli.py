"""What a recipe shows on the command line: --help that leads with the recipe, one-line refusals."""

import subprocess
import sys


def test_recipe_help_leads_with_description_example_and_task_flags():
    proc = subprocess.run([sys.executable, "-m", "recipes.summarization", "--help"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout
    assert text.startswith("usage: python -m recipes.summarization ")
    assert len(text.splitlines()[0]) < 120  # a short usage line, not every flag
    description = text.index("Fine-tune Forge for abstractive summarization")
    example = text.index("    python -m recipes.summarization --model_name_or_path")
    headings = [line for line in text.splitlines() if line and not line.startswith(" ") and line.endswith(":")]
    assert headings[:4] == ["Help:", "Task:", "Data source and size:", "Model:"], headings
    assert {"Optimiser and schedule:", "Evaluation, saving and early stopping:", "Generation (text-to-text recipes):",
            "Hardware, precision and speed:", "Hugging Face Hub:"} <= set(headings)
    task, data = text.index("\nTask:\n"), text.index("\nData source and size:\n")
    model, trainer = text.index("\nModel:\n"), text.index("\nRun: output, length and batch size:\n")
    assert description < example < task < data < model < trainer
    assert task < text.index("  --text_column", task) < data < text.index("  --train_file", data) < model
    # every Trainer flag is still there, grouped
    assert "--learning_rate" in text and "--predict_with_generate" in text and "--push_to_hub" in text
