"""IPTC Photo Metadata 2025.1's AI fields, as XMP beside the C2PA manifest: what newsroom systems, photo libraries
and exiftool read. Written into the picture before it is signed, so the manifest's hard binding covers it (c2pa
keeps it byte for byte), and honouring the manifest's choices: a private prompt is not written, an anonymous
person gets no name.
"""

from __future__ import annotations

import re
from xml.sax.saxutils import escape

IPTC_EXT = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
# Characters XML 1.0 cannot carry at all (C0 controls but tab and newlines, surrogates, U+FFFE/U+FFFF): dropped.
_NOT_XML = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(value: str) -> str:
    """User text as XML character data: what XML cannot carry dropped, markup escaped, a carriage return kept."""
    return escape(_NOT_XML.sub("", value), {"\r": "&#13;"})


def iptc_ai_packet(digital_source_type: str, system: str, version: str | None, prompt: str | None, writer: str | None) -> bytes:
    """An XMP packet with Iptc4xmpExt:DigitalSourceType, AISystemUsed, AISystemVersionUsed, AIPromptInformation
    and AIPromptWriterName (the last two only when given). User text is made XML character data (xml_text)."""
    fields = {
        "DigitalSourceType": digital_source_type,
        "AISystemUsed": system,
        "AISystemVersionUsed": version,
        "AIPromptInformation": prompt,
        "AIPromptWriterName": writer,
    }
    properties = "".join(f"   <Iptc4xmpExt:{name}>{xml_text(value)}</Iptc4xmpExt:{name}>\n" for name, value in fields.items() if value)
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        f'  <rdf:Description rdf:about="" xmlns:Iptc4xmpExt="{IPTC_EXT}">\n'
        f"{properties}"
        "  </rdf:Description>\n"
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="w"?>'
    ).encode("utf-8")
