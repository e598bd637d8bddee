"""A pure-Python stand-in for the coco-caption toolkit's PTB tokenisation of captions.

The coco-caption evaluation (Chen et al., "Microsoft COCO Captions: Data Collection and
Evaluation Server", arXiv:1504.00325, 2015) runs every caption through Stanford CoreNLP 3.4.1's
``PTBTokenizer -preserveLines -lowerCase`` (Java) and then drops the tokens in
``pycocoevalcap.tokenizer.ptbtokenizer.PUNCTUATIONS``. ``ptb_tokenize`` reproduces that on
caption text without Java:

* lower case;
* quotes (straight, curly, ``\\`\\``` and ``''``) and the punctuation marks ``. , ; : ! ?``,
  ``-``, ``--`` and ``...`` dropped; runs of ``!``/``?`` such as ``?!`` kept as one token,
  as PTB does; commas and colons between digits (``1,000``, ``12:30``) kept;
* a word's final period dropped unless it is an abbreviation (``mr.``, ``st.``, a single
  letter ``a.``, or dotted initials ``u.s.a.``/``e.g.``); a leading quote or hyphen dropped;
* clitics split off: ``man's -> man 's``, ``don't -> do n't``, ``they're -> they 're``
  (also ``'ve 'll 'd 'm``), and ``cannot -> can not``, ``gonna -> gon na``,
  ``wanna -> wan na``, ``gotta -> got ta``; a possessive ``kids' -> kids``;
* ``$`` and ``%`` split off (``$5 -> $ 5``, ``100% -> 100 %``); hyphenated words kept;
* brackets written as PTB's escapes ``-lrb- -rrb- -lsb- -rsb- -lcb- -rcb-`` and kept: the
  toolkit lowercases them before its (upper-case) punctuation filter, so they survive there
  too.

It agrees with the Java tokenizer on ordinary captions (the tests compare them); rarer PTB
rules are not reproduced (``rock'n'roll``, ``'tis``, ``no.`` before a number, fraction
normalisation, splitting of unusual symbols).
"""

import re

_ABBREVIATIONS = frozenset(
    "mr mrs ms dr st jr sr vs etc inc co corp ltd ave mt ft gen prof".split())
_SPLIT_WORDS = {"cannot": "can not", "gonna": "gon na", "wanna": "wan na", "gotta": "got ta"}
_DROPPED = frozenset({".", ",", ";", ":", "!", "?", "-", "--", "...", "'", '"'})

_SUBSTITUTIONS = [
    (re.compile("[\u201c\u201d\u201e`]|''"), ' " '),  # double quotes, PTB's `` and ''
    (re.compile("[\u2018\u2019]"), "'"),  # curly single quotes, also used as apostrophes
    (re.compile("[\u2013\u2014]"), " -- "),  # en and em dashes
    (re.compile(r'(["()\[\]{};$%]|\.\.\.|--)'), r" \1 "),
    (re.compile(r"([!?]+)"), r" \1 "),
    (re.compile(r"(?<!\d)([,:])(?!//)|([,:])(?![\d/])"), r" \1\2 "),  # not 1,000 12:30 http://
]
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-",
             "}": "-rcb-"}
_CLITIC = re.compile(r"^(.+?)('s|'re|'ve|'ll|'d|'m|n't)$")
_INITIALS = re.compile(r"([a-z]\.)+")


def ptb_tokenize(caption: str) -> str:
  """Tokenises one caption as coco-caption's PTB tokenizer does; space-separated tokens.

  Args:
    caption: the raw caption, e.g. ``"A man's hat is on the table."``.

  Returns:
    The lower-cased tokens without punctuation, e.g. ``"a man 's hat is on the table"``;
    ``""`` for a caption without words.

  Raises:
    ValueError: if ``caption`` is not a string.
  """
  if not isinstance(caption, str):
    raise ValueError(f"caption must be a str, got {type(caption).__name__}: {caption!r}.")
  text = caption.lower()
  for pattern, replacement in _SUBSTITUTIONS:
    text = pattern.sub(replacement, text)
  tokens = []
  for word in text.split():
    tokens.extend(_split_word(word))
  return " ".join(t for t in tokens if t not in _DROPPED)


def _split_word(word: str) -> list[str]:
  """Splits a final period, quotes and clitics off one whitespace-delimited word."""
  if word in _DROPPED:
    return [word]
  if word in _BRACKETS:
    return [_BRACKETS[word]]
  if word in _SPLIT_WORDS:
    return _SPLIT_WORDS[word].split()
  tail = []
  if len(word) > 1 and word.endswith(".") and not _is_abbreviation(word):
    word, tail = word[:-1], ["."]
  if len(word) > 1 and word[0] in "'-" and not word[1].isdigit():
    word = word[1:]  # an opening quote or dash; '90s and -5 keep theirs
  if len(word) > 1 and word.endswith("'"):
    word, tail = word[:-1], ["'"] + tail  # a closing quote or a plural possessive
  match = _CLITIC.match(word)
  while match:  # from the end: i'd've -> i 'd 've
    word, tail = match.group(1), [match.group(2)] + tail
    match = _CLITIC.match(word)
  return [word] + tail


def _is_abbreviation(word: str) -> bool:
  stem = word[:-1]
  return (stem in _ABBREVIATIONS or (len(stem) == 1 and stem.isalpha())
          or _INITIALS.fullmatch(word) is not None)
