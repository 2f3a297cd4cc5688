// Included by jailer/build.rs: compiles the jailer's baseline (seccomp/baseline.json,
// seccompiler's JSON, already validated by seccompiler itself) into ONE compact
// seccomp program.
//
// Why not seccompiler's own output: it lays rules out as one linear chain, checks
// both words of every argument, and can give one errno per filter (so the baseline
// was two filters). When a filter is installed, the kernel runs it once for every
// syscall number to fill its action cache, so the chain's length is paid ~900 times
// on every jailed start (~120 µs here, against ~25 µs for this layout).
//
// The layout: the arch check (mismatch kills, as seccompiler's does); x32 numbers
// get ENOSYS (seccompiler lets them through to the default, and x32 `unshare`
// would then pass); a binary search over the sorted syscall numbers, whose leaves
// return the rule's errno or jump to its argument checks; the checks; the shared
// returns last, since BPF jumps only forward. Semantics are
// seccompiler's: `dword` arguments compare their low 32 bits. Single-bit
// `masked_eq(m) == m` rules on one argument, ORed, become one `jset`. The jailer's
// tests run this program and seccompiler's side by side on every syscall number
// and a set of arguments.

mod compact {
    use serde_json::Value;
    use std::collections::BTreeMap;

    use seccompiler::sock_filter;

    const LD_W_ABS: u16 = 0x20;
    const ALU_AND_K: u16 = 0x54;
    const JA: u16 = 0x05;
    const JEQ_K: u16 = 0x15;
    const JGE_K: u16 = 0x35;
    const JSET_K: u16 = 0x45;
    const RET_K: u16 = 0x06;

    const RET_ALLOW: u32 = 0x7fff_0000;
    const RET_ERRNO: u32 = 0x0005_0000;
    const RET_KILL_PROCESS: u32 = 0x8000_0000;
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    /// `__X32_SYSCALL_BIT`.
    const X32_BIT: u32 = 0x4000_0000;
    const ENOSYS: u32 = 38;
    const OFF_NR: u32 = 0;
    const OFF_ARCH: u32 = 4;
    /// `seccomp_data.args[i]`'s low word (little-endian).
    fn arg_offset(index: u8) -> u32 {
        16 + 8 * u32::from(index)
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Test {
        Eq(u32),
        Ne(u32),
        MaskedEq { mask: u32, val: u32 },
    }

    /// One rule: every condition holds (on argument `.0`).
    type Rule = Vec<(u8, Test)>;

    #[derive(Debug)]
    struct Syscall {
        name: String,
        errno: u32,
        /// Empty: the syscall is denied whatever its arguments.
        rules: Vec<Rule>,
        unconditional: bool,
    }

    /// A jump target: the next instruction or a label.
    #[derive(Debug, Clone, Copy)]
    enum To {
        Next,
        L(usize),
    }

    struct Code {
        insns: Vec<(u16, u32, To, To)>,
        labels: Vec<Option<usize>>,
    }

    impl Code {
        fn label(&mut self) -> usize {
            self.labels.push(None);
            self.labels.len() - 1
        }
        fn place(&mut self, l: usize) {
            self.labels[l] = Some(self.insns.len());
        }
        fn stmt(&mut self, code: u16, k: u32) {
            self.insns.push((code, k, To::Next, To::Next));
        }
        fn jump(&mut self, code: u16, k: u32, jt: To, jf: To) {
            self.insns.push((code, k, jt, jf));
        }
        fn resolve(self) -> Result<Vec<sock_filter>, String> {
            let offset = |at: usize, to: To| -> Result<u8, String> {
                let target = match to {
                    To::Next => return Ok(0),
                    To::L(l) => self.labels[l].ok_or("an unplaced label")?,
                };
                target
                    .checked_sub(at + 1)
                    .and_then(|d| u8::try_from(d).ok())
                    .ok_or_else(|| format!("jump from {at} to {target} out of a jump's reach"))
            };
            let mut out = Vec::with_capacity(self.insns.len());
            for (at, &(code, k, jt, jf)) in self.insns.iter().enumerate() {
                // `ja` carries its offset in k.
                let (jt, jf, k) = if code == JA {
                    (0, 0, u32::from(offset(at, jt)?))
                } else {
                    (offset(at, jt)?, offset(at, jf)?, k)
                };
                out.push(sock_filter { code, jt, jf, k });
            }
            Ok(out)
        }
    }

    fn u32_of(v: &Value, what: &str) -> Result<u32, String> {
        v.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("{what} must be a number that fits 32 bits, not {v}"))
    }

    fn test_of(arg: &Value, ctx: &str) -> Result<(u8, Test), String> {
        let index = arg
            .get("index")
            .and_then(Value::as_u64)
            .and_then(|i| u8::try_from(i).ok())
            .filter(|i| *i < 6)
            .ok_or_else(|| format!("{ctx}: an argument index must be 0..=5"))?;
        if arg.get("type").and_then(Value::as_str) != Some("dword") {
            return Err(format!("{ctx}: only dword arguments are supported"));
        }
        let val = u32_of(arg.get("val").unwrap_or(&Value::Null), &format!("{ctx}: val"))?;
        let op = arg.get("op").unwrap_or(&Value::Null);
        let test = match (op.as_str(), op.get("masked_eq")) {
            (Some("eq"), _) => Test::Eq(val),
            (Some("ne"), _) => Test::Ne(val),
            (None, Some(mask)) => Test::MaskedEq {
                mask: u32_of(mask, &format!("{ctx}: masked_eq"))?,
                val,
            },
            _ => return Err(format!("{ctx}: op {op} is not supported (eq, ne, masked_eq)")),
        };
        Ok((index, test))
    }

    /// The syscalls of `filters` (each a seccompiler filter object: default allow,
    /// an errno filter action), by number.
    fn syscalls(
        filters: &[(&str, &Value)],
        number: &dyn Fn(&str) -> Result<u32, String>,
    ) -> Result<BTreeMap<u32, Syscall>, String> {
        let mut out: BTreeMap<u32, Syscall> = BTreeMap::new();
        for (fname, filter) in filters {
            if filter.get("default_action").and_then(Value::as_str) != Some("allow") {
                return Err(format!("{fname}: default_action must be \"allow\""));
            }
            let errno = filter
                .get("filter_action")
                .and_then(|a| a.get("errno"))
                .ok_or_else(|| format!("{fname}: filter_action must be {{\"errno\": N}}"))?;
            let errno = u32_of(errno, &format!("{fname}: errno"))?;
            let rules = filter
                .get("filter")
                .and_then(Value::as_array)
                .ok_or_else(|| format!("{fname}: no \"filter\" list"))?;
            for rule in rules {
                let name = rule
                    .get("syscall")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("{fname}: a rule without a syscall name"))?;
                let ctx = format!("{fname}: {name}");
                let tests = match rule.get("args").and_then(Value::as_array) {
                    None => Vec::new(),
                    Some(args) => args
                        .iter()
                        .map(|a| test_of(a, &ctx))
                        .collect::<Result<Vec<_>, _>>()?,
                };
                let nr = number(name)?;
                let entry = out.entry(nr).or_insert_with(|| Syscall {
                    name: name.to_string(),
                    errno,
                    rules: Vec::new(),
                    unconditional: false,
                });
                if entry.errno != errno {
                    return Err(format!("{ctx}: also in a filter with another errno"));
                }
                if tests.is_empty() {
                    entry.unconditional = true;
                } else {
                    entry.rules.push(tests);
                }
                // seccompiler then keeps only the conditional rules: ambiguous.
                if entry.unconditional && !entry.rules.is_empty() {
                    return Err(format!(
                        "{ctx}: a rule without arguments beside rules with arguments"
                    ));
                }
            }
        }
        Ok(out)
    }

    /// The OR of the masks when every rule is one single-bit `masked_eq(m) == m`
    /// on the same argument.
    fn bit_set(rules: &[Rule]) -> Option<(u8, u32)> {
        let mut index = None;
        let mut bits = 0;
        for rule in rules {
            let [(i, Test::MaskedEq { mask, val })] = rule.as_slice() else {
                return None;
            };
            if mask != val || mask.count_ones() != 1 || index.is_some_and(|x| x != *i) {
                return None;
            }
            index = Some(*i);
            bits |= mask;
        }
        index.map(|i| (i, bits))
    }

    /// A syscall's x86_64 number, from seccompiler's table: the operand of the
    /// first `jeq` after the number is loaded, in a one-rule filter.
    pub fn number(name: &str) -> Result<u32, String> {
        let json = serde_json::json!({ "one": {
            "default_action": "allow",
            "filter_action": "trap",
            "filter": [{ "syscall": name }],
        }});
        let map = seccompiler::compile_from_json(
            json.to_string().as_bytes(),
            seccompiler::TargetArch::x86_64,
        )
        .map_err(|e| format!("syscall {name:?}: {e}"))?;
        let prog = map.get("one").ok_or("seccompiler returned no program")?;
        let at = prog
            .iter()
            .position(|i| i.code == LD_W_ABS && i.k == OFF_NR)
            .ok_or_else(|| format!("syscall {name:?}: no number load in seccompiler's program"))?;
        match prog.get(at + 1) {
            Some(i) if i.code == JEQ_K => Ok(i.k),
            _ => Err(format!("syscall {name:?}: no number test in seccompiler's program")),
        }
    }

    /// The compact program for `filters`; `number` maps a syscall name to its
    /// x86_64 number.
    pub fn compile(
        filters: &[(&str, &Value)],
        number: &dyn Fn(&str) -> Result<u32, String>,
    ) -> Result<Vec<sock_filter>, String> {
        let calls = syscalls(filters, number)?;
        let mut c = Code {
            insns: Vec::new(),
            labels: Vec::new(),
        };
        let allow = c.label();
        let kill = c.label();
        let mut errno_labels: BTreeMap<u32, usize> = BTreeMap::new();
        for e in calls.values().map(|s| s.errno).chain([ENOSYS]) {
            errno_labels.entry(e).or_insert_with(|| c.label());
        }
        // Each syscall's entry: straight to its errno, or to its argument checks.
        let entries: Vec<(u32, usize, bool)> = calls
            .iter()
            .map(|(nr, s)| {
                if s.unconditional {
                    (*nr, errno_labels[&s.errno], false)
                } else {
                    (*nr, c.label(), true)
                }
            })
            .collect();

        c.stmt(LD_W_ABS, OFF_ARCH);
        c.jump(JEQ_K, AUDIT_ARCH_X86_64, To::Next, To::L(kill));
        c.stmt(LD_W_ABS, OFF_NR);
        c.jump(JGE_K, X32_BIT, To::L(errno_labels[&ENOSYS]), To::Next);
        search(&mut c, &entries, allow);
        for ((_, s), (_, entry, checked)) in calls.iter().zip(&entries) {
            if *checked {
                c.place(*entry);
                checks(&mut c, s, errno_labels[&s.errno], allow)?;
            }
        }
        // BPF jumps only forward: the shared returns come last.
        c.place(allow);
        c.stmt(RET_K, RET_ALLOW);
        c.place(kill);
        c.stmt(RET_K, RET_KILL_PROCESS);
        for (e, l) in &errno_labels {
            c.place(*l);
            c.stmt(RET_K, RET_ERRNO | (e & 0xffff));
        }
        c.resolve()
    }

    /// A binary search over `entries` (sorted by number), with the number in A.
    fn search(c: &mut Code, entries: &[(u32, usize, bool)], allow: usize) {
        if entries.len() <= 3 {
            for (i, (nr, entry, _)) in entries.iter().enumerate() {
                let miss = if i + 1 == entries.len() {
                    To::L(allow)
                } else {
                    To::Next
                };
                c.jump(JEQ_K, *nr, To::L(*entry), miss);
            }
            if entries.is_empty() {
                c.jump(JA, 0, To::L(allow), To::Next);
            }
            return;
        }
        let mid = entries.len() / 2;
        let right = c.label();
        c.jump(JGE_K, entries[mid].0, To::L(right), To::Next);
        search(c, &entries[..mid], allow);
        c.place(right);
        search(c, &entries[mid..], allow);
    }

    /// The argument checks of one syscall: deny when any rule holds.
    fn checks(c: &mut Code, s: &Syscall, deny: usize, allow: usize) -> Result<(), String> {
        if let Some((index, bits)) = bit_set(&s.rules) {
            c.stmt(LD_W_ABS, arg_offset(index));
            c.jump(JSET_K, bits, To::L(deny), To::L(allow));
            return Ok(());
        }
        if s.rules.is_empty() {
            return Err(format!("{}: a checked syscall without rules", s.name));
        }
        for (r, rule) in s.rules.iter().enumerate() {
            let fail = if r + 1 == s.rules.len() {
                allow
            } else {
                c.label()
            };
            // A holds argument `loaded`, unless an `and` changed it.
            let mut loaded = None;
            for (t, (index, test)) in rule.iter().enumerate() {
                let pass = if t + 1 == rule.len() {
                    To::L(deny)
                } else {
                    To::Next
                };
                if loaded != Some(*index) {
                    c.stmt(LD_W_ABS, arg_offset(*index));
                    loaded = Some(*index);
                }
                match *test {
                    Test::Eq(v) => c.jump(JEQ_K, v, pass, To::L(fail)),
                    Test::Ne(v) => c.jump(JEQ_K, v, To::L(fail), pass),
                    Test::MaskedEq { mask, val } => {
                        c.stmt(ALU_AND_K, mask);
                        loaded = None;
                        c.jump(JEQ_K, val, pass, To::L(fail));
                    }
                }
            }
            if fail != allow {
                c.place(fail);
            }
        }
        Ok(())
    }
}
