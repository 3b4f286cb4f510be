"""Regenerates the nasty-input corpus in this folder: ``python tests/data/bad/make_corpus.py``.

The files are committed; this script documents exactly which bytes each one holds
(BOMs, CRLF, Latin-1, NBSP ... are invisible in an editor).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).parent
HEAD = "declaration_id,hs_code,origin_country,net_mass_kg,customs_value"
GOOD = "D1,030490,CN,10.5,100\nD2,69072100,DE,2,50\n"


def w(name: str, data: str | bytes) -> None:
    (HERE / name).write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def main() -> None:
    w("empty.csv", b"")
    w("blank.csv", "\n\n  \n")
    w("header_only.csv", HEAD + "\n")
    w("latin1.csv", (HEAD + ",description\nD1,030490,CN,1,2,caf\xe9 cr\xe8me\n").encode("latin-1"))
    w("dup_columns.csv", "declaration_id,hs_code,hs_code,origin_country,net_mass_kg,customs_value\n"
      "D1,030490,030490,CN,1,2\n")
    w("missing_required.csv", "declaration_id,hs_code,origin_country,net_mass_kg\nD1,030490,CN,1\n")
    w("semicolon.csv", HEAD.replace(",", ";") + "\nD1;030490;CN;1;2\n")
    w("bad_rows.csv", HEAD + ",gross_mass_kg,packages,date,dispatch_country\n"
      "D1,030490,CN,10.5,100,11,3,2026-03-01,CN\n"        # good
      ",030490,CN,1,1,,,,\n"                              # missing id
      "D3,69A721,CN,1,1,,,,\n"                            # bad hs
      "D4,030490,X1,1,1,,,,\n"                            # bad country
      "D5,030490,CN,abc,1,,,,\n"                          # mass not a number
      "D6,030490,CN,12,1,10,,,\n"                         # net > gross
      "D7,030490,CN,1,1,,2.5,,\n"                         # fractional packages
      "D8,030490,CN,1,1,,,31/02/2026,\n"                  # bad date
      "D1,030490,CN,1,1,,,,\n"                            # duplicate id
      "D10,2846.90,na,1,0,,,2026-03-01T10:00:00,\n"       # good (Namibia, dotted hs, ISO datetime)
      "D11,6907 21 00,CN,-1,1,,,,Z1\n"                    # negative mass + bad dispatch
      "D12,030490,CN,1,-5,,,,\n")                         # negative value
    w("injection.csv", HEAD + ",description,exporter_id\n"
      'D1,030490,CN,1,-2,=cmd|\' /C calc\'!A0,+1\n'
      'D2,030490,CN,1,2,-2+3,@SUM(A1)\n'
      'D3,030490,CN,1,2,"\tx","\rx"\n'
      "D4,030490,CN,1,2,plain,ok\n")
    w("ragged.csv", HEAD + "\nD1,030490,CN,1,2\nD2,030490,CN,1,2,EXTRA,MORE\nD3,030490,CN,1,2\n")
    w("short_rows.csv", HEAD + "\nD1,030490,CN,1,2\nD2,030490,CN\n")
    w("unclosed_quote.csv", HEAD + ',description\nD1,030490,CN,1,2,"never closed\nD2,030490,CN,1,2,x\n')
    w("bom.csv", "\ufeff" + HEAD + "\n" + GOOD)
    w("crlf.csv", (HEAD + "\n" + GOOD).replace("\n", "\r\n"))
    w("quoted_newlines.csv", HEAD + ',description\nD1,030490,CN,1,2,"line one\nline two, with comma"\n'
      'D2,030490,CN,1,2,"say ""hi"""\nD3,030490,CN,1,2,\n')
    w("blank_lines.csv", "\n" + HEAD + "\n\nD1,030490,CN,1,2\n\n\nD2,030490,CN,1,2\n\n")
    w("trailing_comma.csv", HEAD + ",\nD1,030490,CN,1,2,\nD2,030490,CN,1,2,\n")
    w("huge_numbers.csv", HEAD + ",quantity\n"
      "D1,030490,CN,1e308,1,\n"                   # over MAX_MASS_KG
      "D2,030490,CN,1e400,1,\n"                   # overflows to inf
      "D3,030490,CN,99999999999999999999999,1,\n"
      "D4,030490,CN,1,1e14,\n"                    # over MAX_VALUE
      "D5,030490,CN,1,1,1e11\n"                   # over MAX_QUANTITY
      "D6,030490,CN,-0,1,\n"                      # zero mass
      "D7,030490,CN,5e-324,1,\n"                  # tiny but > 0: valid
      "D8,030490,CN,NaN,1,\n"                     # missing required
      "D9,030490,CN,1,1,\n")                      # good
    w("unicode.csv", HEAD + ",description\n"
      "D1,030490,CN,1,2,\u4e2d\u6587 \U0001f600 \u202eRTL\n"                 # fine
      "D2,\uff10\uff13\uff10\uff14\uff19\uff10,CN,1,2,fullwidth hs\n"      # fullwidth digits
      "D3,6907\u00a021\u00a000,CN,1,2,nbsp in hs\n"                       # NBSP: stripped
      "\u200bD4,030490,CN,1,2,zero-width id\n"                            # kept as given
      "D5,030490,\uff23\uff2e,1,2,fullwidth country\n"                    # reject
      "D6,030490,CN,\u0661\u0662,2,arabic-indic digits\n")               # not a number
    w("namibia.csv", HEAD + "\nD1,030490,NA,1,2\nD2,030490,N/A,1,2\n")
    w("mixed.jsonl", '{"declaration_id":"J1","hs_code":"030490","origin_country":"CN",'
      '"net_mass_kg":1,"customs_value":2}\n\n'
      '{"declaration_id":2,"hs_code":30490,"origin_country":"NA","net_mass_kg":"x","customs_value":2}\n'
      '{"declaration_id":"J3","hs_code":"030490","origin_country":"CN","customs_value":2,"x":1}\n')
    w("bad_line.jsonl", '{"declaration_id":"J1","hs_code":"030490","origin_country":"CN",'
      '"net_mass_kg":1,"customs_value":2}\n{not json\n')
    w("dup_keys.jsonl", '{"declaration_id":"J1","declaration_id":"J2","hs_code":"030490",'
      '"origin_country":"CN","net_mass_kg":1,"customs_value":2}\n')
    w("corrupt.parquet", b"PAR1 this is not really parquet PAR1")
    table = pa.table({"declaration_id": ["P1", "P2"], "hs_code": [30490, 69072100],
                      "origin_country": ["CN", "DE"], "net_mass_kg": [1.0, 2.0],
                      "customs_value": [1.0, 2.0]})
    pq.write_table(table, HERE / "numeric_hs.parquet")
    data = (HERE / "numeric_hs.parquet").read_bytes()
    w("truncated.parquet", data[: len(data) // 2])
    w("good.csv.gz", gzip.compress((HEAD + "\n" + GOOD).encode(), mtime=0))
    w("not_gzip.csv.gz", b"plain text pretending to be gzip\n")
    w("unknown.xlsx", b"PK\x03\x04 not supported")


if __name__ == "__main__":
    main()
