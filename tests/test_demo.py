"""The demo page (``python -m recipes.demo``) in a real browser, and the Space that save_hub_folder writes.

The page runs in its own process on tiny trained folders (tests/hub_folders.py); headless Chromium, driven
by Selenium, loads it, types an input into a tab, presses Run and reads the answer, as a user would.
"""

from __future__ import annotations

import ast
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from hub_folders import build_folders

pytestmark = pytest.mark.xdist_group("forge_hub_folders")

CONTEXT = ("Daniel Stone was born in 1883 in the village of Pelton. In 1928 his folding bicycle won the "
           "Hartley Award. Stone died in 1967 and is buried in Pelton.")


@pytest.fixture(scope="session")
def folders(tmp_path_factory):
    return build_folders(tmp_path_factory.mktemp("forge_folders"))


def _browser_paths() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip("no Chromium + chromedriver on this machine (bash .ci/setup installs Debian's chromium and "
                    "chromium-driver with apt; without apt there is no browser to drive)")
    return browser, driver


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def page(folders):
    """The demo served from the folder that holds every task folder; yields its URL."""
    pytest.importorskip("gradio", reason="the demo extra is not installed (pip install -e '.[demo]')")
    root = next(iter(folders.values())).parent
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "recipes.demo", str(root), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 600
    try:
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None:
                raise AssertionError(f"the demo exited: {proc.stdout.read()[-3000:]}")
            if time.time() > deadline:
                raise AssertionError("the demo did not start within 10 minutes")
            time.sleep(1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser(page):
    browser_path, driver_path = _browser_paths()
    webdriver = pytest.importorskip("selenium.webdriver", reason="the demo extra is not installed")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1920,1080"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.get(page)
    yield driver
    driver.quit()


def _open_tab(driver, title: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    tab = WebDriverWait(driver, 120).until(
        EC.element_to_be_clickable((By.XPATH, f"//button[@role='tab' and contains(., '{title}')]")))
    tab.click()


def _type(driver, elem_id: str, text: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    box = WebDriverWait(driver, 60).until(EC.visibility_of_element_located((By.CSS_SELECTOR, f"#{elem_id} textarea")))
    box.clear()
    box.send_keys(text)


def _run_and_read(driver, task: str, read) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.find_element(By.ID, f"{task}-run").click()
    return WebDriverWait(driver, 300).until(lambda d: read(d) or False)


def test_sentiment_tab_answers_in_the_browser(browser):
    from selenium.webdriver.common.by import By

    _open_tab(browser, "Sentiment")
    _type(browser, "text-classification-input", "what a wonderful and touching film .")
    def label(d):  # "Prediction", then the top label, then each label with its score; a timer while pending
        lines = [line for line in d.find_element(By.ID, "text-classification-output").text.splitlines()
                 if line != "Prediction"]
        return lines if lines and lines[0] in ("positive", "negative") else None

    shown = _run_and_read(browser, "text-classification", label)
    assert shown[0] == "positive" and "negative" in shown  # the tiny model overfitted this sentence as positive


def test_question_answering_tab_highlights_the_answer(browser):
    from selenium.webdriver.common.by import By

    _open_tab(browser, "Question answering")
    _type(browser, "question-answering-input", "What prize did Daniel Stone win?")
    _type(browser, "question-answering-context", CONTEXT)
    answer = _run_and_read(browser, "question-answering", lambda d: d.find_element(
        By.CSS_SELECTOR, "#question-answering-output textarea").get_attribute("value"))
    assert answer == "the Hartley Award"
    highlighted = browser.find_element(By.ID, "question-answering-highlight").text
    assert "the hartley award answer" in " ".join(highlighted.split()).lower()  # the span, then its label


def test_srl_and_translation_tabs(browser):
    from selenium.webdriver.common.by import By

    _open_tab(browser, "Semantic roles")
    _type(browser, "semantic-role-labeling-input", "The committee [approved] the plan on Monday .")
    spans = _run_and_read(browser, "semantic-role-labeling", lambda d: (
        lambda text: text if "approved" in text else None)(d.find_element(By.ID, "semantic-role-labeling-output").text))
    assert "ARG0" in spans and "approved" in spans

    _open_tab(browser, "Translation")
    _type(browser, "translation-input", "Ein Mann angelt.")
    text = _run_and_read(browser, "translation", lambda d: d.find_element(
        By.CSS_SELECTOR, "#translation-output textarea").get_attribute("value"))
    assert text.strip().startswith("A man")


def test_save_hub_folder_adds_a_space(folders, tmp_path):
    """space="user/repo": app.py (the same page, no Forge import) + requirements + Space README."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from recipes.publishing.export import save_hub_folder

    source = folders["text-classification"]
    model = AutoModelForSequenceClassification.from_pretrained(source, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=True)
    out = save_hub_folder(model, tokenizer, tmp_path / "sentiment", task="text-classification", space="me/forge-sst2")
    space = out / "space"
    app = (space / "app.py").read_text()
    imported = {(n.module if isinstance(n, ast.ImportFrom) else a.name).split(".")[0]
                for n in ast.walk(ast.parse(app)) if isinstance(n, (ast.Import, ast.ImportFrom))
                for a in (n.names if isinstance(n, ast.Import) else [n])}
    assert imported <= {"__future__", "json", "os", "sys", "pathlib", "typing", "gradio", "transformers",
                        "huggingface_hub"}, imported
    assert "'me/forge-sst2'" in app
    assert "gradio" in (space / "requirements.txt").read_text()
    assert "sdk: gradio" in (space / "README.md").read_text() and "me/forge-sst2" in (space / "README.md").read_text()
