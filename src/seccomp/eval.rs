//! A classic BPF interpreter for seccomp filters, enough to check what a compiled profile decides
//! (used by the differential test against libseccomp and by the fuzz target).

use super::Insn;

/// The struct seccomp_data a filter sees.
#[derive(Debug, Clone, Copy)]
pub struct Data {
    pub nr: u32,
    pub arch: u32,
    pub ip: u64,
    pub args: [u64; 6],
}

impl Data {
    fn word(&self, off: u32) -> Option<u32> {
        Some(match off {
            0 => self.nr,
            4 => self.arch,
            8 => self.ip as u32,
            12 => (self.ip >> 32) as u32,
            o if (16..64).contains(&o) && o % 4 == 0 => {
                let a = self.args[((o - 16) / 8) as usize];
                if (o - 16) % 8 == 0 {
                    a as u32
                } else {
                    (a >> 32) as u32
                }
            }
            _ => return None,
        })
    }
}

/// Runs one filter; `None` for a program the kernel would reject at run time.
pub fn run(prog: &[Insn], d: &Data) -> Option<u32> {
    let (mut a, mut x) = (0u32, 0u32);
    let mut mem = [0u32; 16];
    let mut pc = 0usize;
    while pc < prog.len() {
        let i = prog[pc];
        pc += 1;
        match i.code {
            0x20 => a = d.word(i.k)?,                // ld [k]
            0x00 => a = i.k,                         // ld #k
            0x01 => x = i.k,                         // ldx #k
            0x60 => a = *mem.get(i.k as usize)?,     // ld M[k]
            0x61 => x = *mem.get(i.k as usize)?,     // ldx M[k]
            0x02 => *mem.get_mut(i.k as usize)? = a, // st M[k]
            0x03 => *mem.get_mut(i.k as usize)? = x, // stx M[k]
            0x04 => a = a.wrapping_add(i.k),
            0x54 => a &= i.k,
            0x44 => a |= i.k,
            0x74 => a = a.checked_shr(i.k).unwrap_or(0),
            0x64 => a = a.checked_shl(i.k).unwrap_or(0),
            0x87 => a = x,              // txa
            0x07 => x = a,              // tax
            0x05 => pc += i.k as usize, // ja
            0x15 | 0x25 | 0x35 | 0x45 | 0x1d | 0x2d | 0x3d | 0x4d => {
                let v = if i.code & 0x08 != 0 { x } else { i.k };
                let t = match i.code & 0xf0 {
                    0x10 => a == v,
                    0x20 => a > v,
                    0x30 => a >= v,
                    _ => a & v != 0,
                };
                pc += if t { i.jt } else { i.jf } as usize;
            }
            0x06 => return Some(i.k), // ret #k
            0x16 => return Some(a),   // ret a
            _ => return None,
        }
    }
    None
}

/// The kernel's order of precedence: lower is stronger.
pub fn precedence(ret: u32) -> u32 {
    match ret & 0xffff_0000 {
        super::RET_KILL_PROCESS => 0,
        0 => 1,
        super::RET_TRAP => 2,
        super::RET_ERRNO => 3,
        super::RET_USER_NOTIF => 4,
        super::RET_TRACE => 5,
        super::RET_LOG => 6,
        super::RET_ALLOW => 7,
        _ => 1, // unknown actions act as KILL_THREAD
    }
}

/// What the kernel decides with all of `filters` installed: the strongest result; among equals,
/// the most recently installed filter's.
pub fn decide<'a>(filters: impl IntoIterator<Item = &'a [Insn]>, d: &Data) -> Option<u32> {
    let mut best: Option<u32> = None;
    for prog in filters {
        let r = run(prog, d)?;
        if best.is_none_or(|b| precedence(r) <= precedence(b)) {
            best = Some(r);
        }
    }
    best
}
