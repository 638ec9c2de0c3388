"""Anonymize photos with an exported generator (``python -m gan.anonymize``; ``gan.anonymize.cli`` documents it).

``Anonymizer`` replaces the faces of photos (``gan.anonymize.anonymizer``); ``paste_face`` is the one way a
generated face enters a photo, used by the privacy report and its training callback too.
"""

from gan.anonymize.anonymizer import Anonymizer, Report, paste_face
from gan.anonymize.cli import main

__all__ = ["Anonymizer", "Report", "main", "paste_face"]
