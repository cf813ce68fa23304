"""Provenance: what every output carries and how anyone checks it.

Signing (manifest → signing, as this instance's signing identity, with the person's authorship and terms), the
soft bindings (watermark, TrustMark, fingerprint), the registry that records every output before it is
published (publish), and verification (verify, with recovery of stripped copies from the registry).
"""
