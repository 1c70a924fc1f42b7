"""Full-text search over post titles and content: SQLite FTS5 or PostgreSQL tsvector.

Both backends get the same query: the words of the user's input, each required, matched
after stemming, ranked with title matches first. The user's text never reaches a query
parser as syntax: it is cut into words first, so quotes, operators, NUL bytes and very long
input cannot cause an error.
"""

import re
from dataclasses import dataclass

from markupsafe import Markup, escape
from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

from config import utcnow
from models import UTCDateTime

MAX_TERMS = 12
MAX_TERM_LENGTH = 64
WORD = re.compile(r"\w+", re.UNICODE)
# Characters from Unicode's private-use area mark the matches in the database's snippet;
# the snippet is escaped first and only then are they turned into <mark> tags.
MARK_START, MARK_END = "\ue000", "\ue001"
SNIPPET_WORDS = 24


@dataclass(frozen=True)
class SearchHit:
    post_id: int
    title_html: Markup
    snippet_html: Markup


def search_terms(query: str) -> list[str]:
    """The words to look for, lowercased, de-duplicated and bounded in number and length."""
    terms: list[str] = []
    for word in WORD.findall(query.replace("\x00", " ").lower()):
        if word not in terms and len(word) <= MAX_TERM_LENGTH:
            terms.append(word)
    return terms[:MAX_TERMS]


def highlight(marked: str) -> Markup:
    """Escape the database's text, then turn the match markers into <mark> elements.

    Posts cannot contain the marker characters (the schemas drop them), but a row written
    some other way might: markers are paired here, so the result is always balanced markup.
    """
    parts: list[str] = []
    is_open = False
    for piece in re.split(f"([{MARK_START}{MARK_END}])", marked):
        if piece == MARK_START and not is_open:
            parts.append("<mark>")
            is_open = True
        elif piece == MARK_END and is_open:
            parts.append("</mark>")
            is_open = False
        elif piece not in (MARK_START, MARK_END):
            parts.append(str(escape(piece)))
    if is_open:
        parts.append("</mark>")
    return Markup("".join(parts))


# Ranking costs time in proportion to the matches: a word found in every one of a million
# posts took 0.8 s to rank on SQLite. So only the newest CANDIDATES matches are ranked (a
# walk down the index in id order, which is cheap); older posts are reached by searching
# with more specific words, and the page says when this happened.
CANDIDATES = 2000

# The id of the newest match too old to rank, if there is one (ids only grow).
_SQLITE_BOUNDARY = """
    SELECT rowid AS below FROM posts_fts WHERE posts_fts MATCH :match
    ORDER BY rowid DESC LIMIT 1 OFFSET :candidates
"""
_POSTGRES_BOUNDARY = """
    SELECT id AS below FROM posts WHERE search_vector @@ to_tsquery('english', :match)
    ORDER BY id DESC LIMIT 1 OFFSET :candidates
"""

# Only posts readers may see: their moment has come (drafts have none), their author is not
# suspended (services.posts.live says the same for the ORM's queries).
_LIVE = "published_at <= :now AND NOT hidden"

# Ordering by FTS5's own `rank` column (bm25, title weighted ten times the body) lets the
# index return matches in rank order, with no separate sort step.
_SQLITE = text(
    f"""
    WITH boundary AS ({_SQLITE_BOUNDARY})
    SELECT rowid AS post_id,
           highlight(posts_fts, 0, '{MARK_START}', '{MARK_END}') AS title,
           snippet(posts_fts, 1, '{MARK_START}', '{MARK_END}', '…', {SNIPPET_WORDS}) AS snippet,
           (SELECT below FROM boundary) IS NOT NULL AS narrowed
    FROM posts_fts
    WHERE posts_fts MATCH :match AND rank MATCH 'bm25(10.0, 1.0)'
      AND rowid > coalesce((SELECT below FROM boundary), 0)
      AND EXISTS (SELECT 1 FROM posts WHERE posts.id = posts_fts.rowid AND {_LIVE})
    ORDER BY rank
    LIMIT :limit OFFSET :offset
    """
).bindparams(bindparam("now", type_=UTCDateTime()))

_POSTGRES = text(
    f"""
    WITH boundary AS ({_POSTGRES_BOUNDARY})
    SELECT p.id AS post_id,
           ts_headline('english', p.title, q.query,
                       'HighlightAll=true, StartSel={MARK_START}, StopSel={MARK_END}') AS title,
           ts_headline('english', p.content, q.query,
                       'MaxWords={SNIPPET_WORDS}, MinWords=8, StartSel={MARK_START}, '
                       'StopSel={MARK_END}, FragmentDelimiter=…, MaxFragments=2') AS snippet,
           (SELECT below FROM boundary) IS NOT NULL AS narrowed
    FROM posts AS p, to_tsquery('english', :match) AS q(query)
    WHERE p.search_vector @@ q.query AND p.id > coalesce((SELECT below FROM boundary), 0)
      AND {_LIVE}
    ORDER BY ts_rank_cd(p.search_vector, q.query) DESC, p.id DESC
    LIMIT :limit OFFSET :offset
    """
).bindparams(bindparam("match"), bindparam("now", type_=UTCDateTime()))

# Whether more posts match than are ranked, for a page past the last ranked match (it has
# no rows to carry the answer).
_SQLITE_NARROWED = text(f"SELECT EXISTS ({_SQLITE_BOUNDARY})")
_POSTGRES_NARROWED = text(f"SELECT EXISTS ({_POSTGRES_BOUNDARY})").bindparams(bindparam("match"))


def _match_expression(terms: list[str], dialect: str) -> str:
    if dialect == "sqlite":
        # Each word as an FTS5 string (quotes doubled), all of them required.
        return " ".join('"' + term.replace('"', '""') + '"' for term in terms)
    # \w+ words are safe tsquery lexemes once quoted; & requires all of them.
    return " & ".join("'" + term.replace("'", "''") + "'" for term in terms)


@dataclass(frozen=True)
class Found:
    hits: list[SearchHit]
    # More posts match than were ranked: only the newest CANDIDATES were.
    narrowed: bool


def find(db: Session, *, query: str, limit: int, offset: int) -> Found:
    """Ranked matches for `query` among its newest CANDIDATES; none when it has no words."""
    terms = search_terms(query)
    if not terms:
        return Found([], narrowed=False)
    dialect = db.get_bind().dialect.name
    sqlite = dialect == "sqlite"
    statement = _SQLITE if sqlite else _POSTGRES
    parameters = {
        "match": _match_expression(terms, dialect),
        "limit": limit,
        "offset": offset,
        "candidates": CANDIDATES,
        "now": utcnow(),
    }
    rows = db.execute(statement, parameters).all()
    hits = [SearchHit(row.post_id, highlight(row.title), highlight(row.snippet)) for row in rows]
    if rows:
        narrowed = bool(rows[0].narrowed)
    elif offset:
        narrowed_query = _SQLITE_NARROWED if sqlite else _POSTGRES_NARROWED
        narrowed = bool(db.execute(narrowed_query, parameters).scalar())
    else:
        narrowed = False  # nothing matches at all
    return Found(hits, narrowed=narrowed)
