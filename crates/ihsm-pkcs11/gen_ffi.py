#!/usr/bin/env python3
"""Generates src/ffi.rs from cryptoki-sys's bindings: one exported shim per
function of CK_FUNCTION_LIST_3_2 and the 2.40, 3.0 and 3.2 function lists.

    python3 crates/ihsm-pkcs11/gen_ffi.py                  # rewrites src/ffi.rs
    python3 crates/ihsm-pkcs11/gen_ffi.py --out FILE       # writes FILE instead
    python3 crates/ihsm-pkcs11/gen_ffi.py --bindings PATH  # another bindings file

By default the bindings are those of the cryptoki-sys in Cargo.lock (found with
`cargo metadata --locked --offline`), and the output is formatted by rustfmt with
the workspace's rustfmt.toml: the same inputs give the same bytes, so CI can
compare a fresh copy with the committed one:

    python3 crates/ihsm-pkcs11/gen_ffi.py --out "$tmp/ffi.rs" &&
        diff -u crates/ihsm-pkcs11/src/ffi.rs "$tmp/ffi.rs"

Functions listed in IMPLEMENTED call crate::api::<snake_case name>; the rest
answer CKR_FUNCTION_NOT_SUPPORTED. `--signatures` prints the inner functions'
signatures, for writing a new one.
"""
import argparse
import json
import re
import subprocess
from pathlib import Path

CRATE = Path(__file__).resolve().parent
WORKSPACE = CRATE.parent.parent

IMPLEMENTED = {
    'C_Initialize', 'C_Finalize', 'C_GetInfo', 'C_GetFunctionList', 'C_GetSlotList', 'C_GetSlotInfo',
    'C_GetTokenInfo', 'C_GetMechanismList', 'C_GetMechanismInfo', 'C_InitToken', 'C_InitPIN', 'C_SetPIN',
    'C_OpenSession', 'C_CloseSession', 'C_CloseAllSessions', 'C_GetSessionInfo', 'C_Login', 'C_Logout',
    'C_CreateObject', 'C_CopyObject', 'C_DestroyObject', 'C_GetObjectSize', 'C_GetAttributeValue',
    'C_SetAttributeValue', 'C_FindObjectsInit', 'C_FindObjects', 'C_FindObjectsFinal',
    'C_EncryptInit', 'C_Encrypt', 'C_EncryptUpdate', 'C_EncryptFinal', 'C_DecryptInit', 'C_Decrypt',
    'C_DecryptUpdate', 'C_DecryptFinal', 'C_DigestInit', 'C_Digest', 'C_DigestUpdate', 'C_DigestFinal',
    'C_SignInit', 'C_Sign', 'C_SignUpdate', 'C_SignFinal', 'C_VerifyInit', 'C_Verify', 'C_VerifyUpdate',
    'C_VerifyFinal', 'C_GenerateKey', 'C_GenerateKeyPair', 'C_WrapKey', 'C_UnwrapKey', 'C_DeriveKey',
    'C_SeedRandom', 'C_GenerateRandom', 'C_GetFunctionStatus', 'C_CancelFunction',
    'C_GetInterfaceList', 'C_GetInterface',
    'C_MessageSignInit', 'C_SignMessage', 'C_SignMessageBegin', 'C_SignMessageNext', 'C_MessageSignFinal',
    'C_MessageVerifyInit', 'C_VerifyMessage', 'C_VerifyMessageBegin', 'C_VerifyMessageNext',
    'C_MessageVerifyFinal', 'C_EncapsulateKey', 'C_DecapsulateKey', 'C_VerifySignatureInit',
    'C_VerifySignature', 'C_VerifySignatureUpdate', 'C_VerifySignatureFinal', 'C_WaitForSlotEvent',
}


def fields(src, struct):
    m = re.search(r'pub struct ' + struct + r' \{(.*?)\n\}', src, re.S)
    return re.findall(r'pub (C_\w+): CK_C_\w+', m.group(1))


def signature(src, name):
    m = re.search(r'pub type CK_' + name + r'\s*=\s*::std::option::Option<\s*unsafe extern "C" fn\((.*?)\)\s*-> CK_RV,?\s*>;', src, re.S)
    if not m:
        raise SystemExit('no signature for ' + name)
    out = []
    for a in (x.strip() for x in m.group(1).split(',')):
        if a:
            n, t = a.split(':', 1)
            out.append((n.strip(), t.strip().replace('::std::os::raw::c_void', 'c_void')))
    return out


def snake(name):
    s = re.sub(r'(?<!^)(?=[A-Z])', '_', name[2:]).lower()
    return s.replace('p_i_n', 'pin')


def flist(static, struct, names, version):
    body = '\n'.join(f'    {n}: Some({n}),' for n in names)
    return (f'pub(crate) static {static}: {struct} = {struct} {{\n'
            f'    version: CK_VERSION {{ major: {version[0]}, minor: {version[1]} }},\n{body}\n}};\n')


def bindings():
    """cryptoki-sys's bindings for this target, from the locked dependency."""
    meta = json.loads(subprocess.run(
        ['cargo', 'metadata', '--format-version', '1', '--locked', '--offline'],
        cwd=WORKSPACE, check=True, capture_output=True, text=True).stdout)
    sys_crate = [p for p in meta['packages'] if p['name'] == 'cryptoki-sys']
    if len(sys_crate) != 1:
        raise SystemExit('expected one cryptoki-sys in Cargo.lock')
    return Path(sys_crate[0]['manifest_path']).parent / 'src/bindings/x86_64-unknown-linux-gnu.rs'


def rustfmt(text):
    """`text` as `cargo fmt` leaves it."""
    return subprocess.run(
        ['rustfmt', '--edition', '2024', '--config-path', str(WORKSPACE / 'rustfmt.toml'),
         '--emit', 'stdout'],
        input=text, check=True, capture_output=True, text=True).stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--bindings', type=Path, help="cryptoki-sys's bindings (default: the locked one)")
    ap.add_argument('--out', type=Path, default=CRATE / 'src/ffi.rs', help='where to write (default: src/ffi.rs)')
    ap.add_argument('--signatures', action='store_true', help="print the inner functions' signatures")
    opt = ap.parse_args()
    src = (opt.bindings or bindings()).read_text()
    names = fields(src, 'CK_FUNCTION_LIST_3_2')
    out = ['''//! The exported PKCS#11 entry points, generated by `gen_ffi.py` from
//! cryptoki-sys's `CK_FUNCTION_LIST_3_2`: each shim hands its raw arguments to the
//! inner function of the same name in [`crate::api`] inside [`crate::guard`],
//! which catches panics and turns the result into a `CK_RV` in one place.
//! Functions ihsm does not implement answer `CKR_FUNCTION_NOT_SUPPORTED`.
#![allow(non_snake_case, clippy::too_many_arguments)]

use core::ffi::c_void;

use cryptoki_sys::*;

use crate::{api, guard};
''']
    for name in names:
        args = signature(src, name)
        if name in IMPLEMENTED:
            params = ', '.join(f'{n}: {t}' for n, t in args)
            body = (f'    // SAFETY: `api::{snake(name)}` asks of these arguments what PKCS#11 3.2\n'
                    f'    // asks of {name}\'s, which is this function\'s own contract.\n'
                    f'    guard(|| unsafe {{ api::{snake(name)}({", ".join(n for n, _ in args)}) }})')
        else:
            params = ', '.join(f'_{n}: {t}' for n, t in args)
            body = '    guard(|| Err(CKR_FUNCTION_NOT_SUPPORTED))'
        out.append(f'''/// `{name}`.
///
/// # Safety
/// As PKCS#11 3.2 specifies for `{name}`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn {name}({params}) -> CK_RV {{
{body}
}}
''')
    out.append('/// The 2.40 function list (`C_GetFunctionList`).\n' + flist('FUNCTIONS_2_40', 'CK_FUNCTION_LIST', fields(src, 'CK_FUNCTION_LIST'), (2, 40)))
    out.append('/// The 3.0 function list.\n' + flist('FUNCTIONS_3_0', 'CK_FUNCTION_LIST_3_0', fields(src, 'CK_FUNCTION_LIST_3_0'), (3, 0)))
    out.append('/// The 3.2 function list.\n' + flist('FUNCTIONS_3_2', 'CK_FUNCTION_LIST_3_2', names, (3, 2)))
    opt.out.write_text(rustfmt('\n'.join(out)))
    for name in names:
        if opt.signatures and name in IMPLEMENTED:
            print(f'{snake(name)}({", ".join(f"{n}: {t}" for n, t in signature(src, name))})')


main()
