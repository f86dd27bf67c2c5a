"""Server-rendered pages, one module per feature: signing in (`session`), the hold worklist and
dashboard (`worklist`), a visit's decision and its re-run (`decisions`), the mapping tables
(`mappings`), the site's practitioner table (`practitioners`), every table replaced whole and the
audit log (`tables`); `common` holds the blueprint they share.

Signed in with an API token (its role decides what the page offers); the session cookie is
signed with the instance's secret key; every form carries a CSRF token.
"""

from plugin.web.pages import decisions, mappings, practitioners, session, tables, worklist
from plugin.web.pages.common import bp

__all__ = ["bp", "decisions", "mappings", "practitioners", "session", "tables", "worklist"]
