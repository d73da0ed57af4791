"""The deploy settings as docs/deploy.md shows them, parsed as written.

Every ```yaml block of docs/deploy.md goes through scripts/deploy.py's
`DeployConfig` unchanged, so the documentation cannot drift from what the
script accepts. Unquoted `0x...` addresses are YAML 1.1 integers to a plain
`yaml.safe_load`; the script (and the term sheet reader) keep them as the
address written (gpucredit.yamltext), and refuse a number with a hint.

Run with `python -m pytest -p no:pytest-brownie tests/service/test_deploy_config.py`.
"""

from __future__ import annotations

import re

import pytest
import yaml
from livenet import REPO

from gpucredit import yamltext
from gpucredit.termsheet import TermSheetError, load_termsheet
from scripts.deploy import DeployConfig, DeployError

DOCS = REPO / "docs" / "deploy.md"
ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}\b")


def docs_yaml_blocks() -> list[str]:
    """The ```yaml blocks of docs/deploy.md, verbatim."""
    return re.findall(r"^```yaml\n(.*?)^```$", DOCS.read_text(), flags=re.M | re.S)


def _settings_addresses(block: str) -> list[str]:
    """Addresses on the block's setting lines (not in comments), in order."""
    return [a for line in block.splitlines() for a in ADDRESS.findall(line.split("#", 1)[0])]


def test_the_docs_show_a_deploy_config():
    blocks = docs_yaml_blocks()
    assert blocks, "docs/deploy.md has no ```yaml block"
    assert any(_settings_addresses(block) for block in blocks)


@pytest.mark.parametrize("index", range(len(docs_yaml_blocks())))
def test_each_docs_yaml_block_is_accepted_as_written(index, tmp_path):
    block = docs_yaml_blocks()[index]
    path = tmp_path / "deploy.yaml"
    path.write_text(block)
    config = DeployConfig.from_sources(str(path), env={})
    accepted = [
        *(config.issuers or []),
        *(config.operators or []),
        *(config.attestors or []),
        *([config.trustee] if config.trustee else []),
        *(config.oracle_signers or []),
    ]
    # every address the block writes arrives as that address, checksummed
    assert accepted == _settings_addresses(block)


def test_the_docs_example_needs_the_loader_plain_yaml_would_break_it():
    """What the script met before: the docs' bare addresses as YAML integers."""
    (block,) = [b for b in docs_yaml_blocks() if "issuers:" in b]
    plain = yaml.safe_load(block)
    assert isinstance(plain["issuers"][0], int)
    assert isinstance(yamltext.load(block)["issuers"][0], str)


def test_bare_and_quoted_addresses_and_a_single_one_without_a_list(tmp_path):
    path = tmp_path / "deploy.yaml"
    path.write_text(
        "issuers: 0x70997970c51812dc3a010c7d01b50e0d17dc79c8\n"
        "operators: ['0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC']\n"
        'trustee: "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65"\n'
        "oracle_signers: 0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc,"
        "0x976EA74026E726554dB657fA54763abd0C3a0aa9\n"
    )
    config = DeployConfig.from_sources(str(path), env={})
    assert config.issuers == ["0x70997970C51812dc3A010C7d01b50e0d17dc79C8"]
    assert config.operators == ["0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"]
    assert config.trustee == "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65"
    assert config.oracle_signers == [
        "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc",
        "0x976EA74026E726554dB657fA54763abd0C3a0aa9",
    ]


def test_a_number_where_an_address_belongs_is_refused_with_a_hint():
    with pytest.raises(DeployError, match=r"trustee: 123 is a number, not an address.*quoted"):
        DeployConfig.parse({"trustee": 123})
    with pytest.raises(DeployError, match=r"issuers: 642829559307850963\d+ is a number"):
        DeployConfig.parse({"issuers": [int("0x70997970C51812dc3A010C7d01b50e0d17dc79C8", 16)]})
    with pytest.raises(DeployError, match=r"issuers: '0x1234' is not an address"):
        DeployConfig.parse({"issuers": "0x1234"})


def test_short_hex_numbers_stay_numbers():
    assert yamltext.load("a: 0x10\nb: 10\nc: '0x10'") == {"a": 16, "b": 10, "c": "0x10"}


def test_a_term_sheet_takes_bare_addresses_too(tmp_path):
    text = (REPO / "examples" / "termsheet.yaml").read_text()
    trustee = "  # trustee: 0x...                   # default: the deployment's trustee"
    assert trustee in text
    path = tmp_path / "termsheet.yaml"
    path.write_text(text.replace(trustee, "  trustee: 0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65"))
    assert load_termsheet(path).parties.trustee == "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65"
    path.write_text(text.replace(trustee, "  trustee: 12345"))
    with pytest.raises(TermSheetError, match="12345 is a number, not an address"):
        load_termsheet(path)
