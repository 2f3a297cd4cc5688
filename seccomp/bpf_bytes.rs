// Included by build.rs and jailer/build.rs: a compiled seccomp program as the
// bytes the binaries embed (8 per instruction, little-endian), which
// caisson::seccomp::decode_program reads back.
fn bpf_bytes(prog: &[seccompiler::sock_filter]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(prog.len() * 8);
    for insn in prog {
        bytes.extend_from_slice(&insn.code.to_le_bytes());
        bytes.push(insn.jt);
        bytes.push(insn.jf);
        bytes.extend_from_slice(&insn.k.to_le_bytes());
    }
    bytes
}
