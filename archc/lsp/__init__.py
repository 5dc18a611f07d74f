"""The language server behind `archc lsp` (optional extra `archc[lsp]`: pygls and lsprotocol).

`archc.lsp.document` is plain Python over `archc.api.compile_text`; `archc.lsp.server`
wires it to the protocol. Nothing here is imported by `archc check`.
"""
