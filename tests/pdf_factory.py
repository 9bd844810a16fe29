"""PDFs made in the test, with pypdf alone: pages with a text layer (a Helvetica content stream written by
hand), a "scanned" one (a picture and no text), an encrypted one."""

from __future__ import annotations

import io

from pypdf import PdfWriter
from pypdf.generic import (
    ArrayObject,
    DecodedStreamObject,
    DictionaryObject,
    NameObject,
    NumberObject,
)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _font(writer: PdfWriter) -> DictionaryObject:
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    return DictionaryObject({NameObject("/F1"): writer._add_object(font)})


def _page(writer: PdfWriter, content: bytes, resources: DictionaryObject) -> None:
    page = writer.add_blank_page(width=612, height=792)
    stream = DecodedStreamObject()
    stream.set_data(content)
    page[NameObject("/Contents")] = writer._add_object(stream)
    page[NameObject("/Resources")] = resources


def _bytes(writer: PdfWriter) -> bytes:
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def text_pdf(pages: list[list[str]], password: str | None = None) -> bytes:
    """One page per item, each a list of lines (ASCII) in a text layer."""
    writer = PdfWriter()
    resources = DictionaryObject({NameObject("/Font"): _font(writer)})
    for lines in pages:
        ops = ["BT", "/F1 11 Tf", "14 TL", "72 740 Td"]
        for line in lines:
            ops += [f"({_escape(line)}) Tj", "T*"]
        ops.append("ET")
        _page(writer, "\n".join(ops).encode("latin-1"), resources)
    if password is not None:
        writer.encrypt(user_password=password, owner_password=password + "-owner", algorithm="RC4-128")  # AES would need `cryptography`
    return _bytes(writer)


def scanned_pdf(pages: int = 2) -> bytes:
    """Pages that only show a picture (a grey 8x8 image drawn over the page): no text layer at all."""
    writer = PdfWriter()
    image = DecodedStreamObject()
    image.set_data(bytes(range(0, 256, 4)))  # 64 grey pixels
    image.update(
        {
            NameObject("/Type"): NameObject("/XObject"),
            NameObject("/Subtype"): NameObject("/Image"),
            NameObject("/Width"): NumberObject(8),
            NameObject("/Height"): NumberObject(8),
            NameObject("/ColorSpace"): NameObject("/DeviceGray"),
            NameObject("/BitsPerComponent"): NumberObject(8),
        }
    )
    resources = DictionaryObject(
        {
            NameObject("/XObject"): DictionaryObject({NameObject("/Im1"): writer._add_object(image)}),
            NameObject("/ProcSet"): ArrayObject([NameObject("/PDF"), NameObject("/ImageB")]),
        }
    )
    for _ in range(pages):
        _page(writer, b"q 540 0 0 720 36 36 cm /Im1 Do Q", resources)
    return _bytes(writer)
