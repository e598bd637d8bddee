"""read_lines: line endings, blank lines, UTF-8, and the errors that name the path."""

import pytest

from vislang_jax.data.text_corpus import read_lines


def test_line_endings_and_blank_lines(tmp_path):
  path = tmp_path / "corpus.txt"
  # "\r\n", a final newline, a blank line, and a Unicode line separator inside a line.
  path.write_bytes("ein Satz\r\n\nzwei\u2028S\u00e4tze\n   \nletzter\n".encode("utf-8"))
  assert read_lines(path) == ["ein Satz", "", "zwei\u2028S\u00e4tze", "   ", "letzter"]
  assert read_lines(str(path), skip_blank=True) == ["ein Satz", "zwei\u2028S\u00e4tze", "letzter"]
  no_final_newline = tmp_path / "b.txt"
  no_final_newline.write_text("a\nb", encoding="utf-8")
  assert read_lines(no_final_newline) == ["a", "b"]


def test_errors_name_the_path(tmp_path):
  with pytest.raises(ValueError, match=r"missing\.txt.*does not exist"):
    read_lines(tmp_path / "missing.txt")
  with pytest.raises(ValueError, match="directory"):
    read_lines(tmp_path)
  empty = tmp_path / "empty.txt"
  empty.write_text("")
  with pytest.raises(ValueError, match=r"empty\.txt.*an empty file"):
    read_lines(empty)
  blank = tmp_path / "blank.txt"
  blank.write_text("\n  \n\t\n")
  with pytest.raises(ValueError, match=r"blank\.txt.*3 blank lines"):
    read_lines(blank)
  latin = tmp_path / "latin.txt"
  latin.write_bytes("ok\nS\u00e4tze\n".encode("latin-1"))
  with pytest.raises(ValueError, match=r"latin\.txt.*UTF-8.*line 2"):
    read_lines(latin)
