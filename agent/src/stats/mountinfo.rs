//! Parser for `/proc/<pid>/mountinfo` (proc(5)).
//!
//! ```text
//! 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//! (1)(2)(3)   (4)   (5)      (6)      (7)   (8) (9)   (10)         (11)
//! ```
//! (7) is zero or more optional fields ended by the separator `-` (8). Paths escape space,
//! tab, newline and backslash as octal (`\040`, `\011`, `\012`, `\134`).

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub(crate) mount_id: u32,
    pub(crate) parent_id: u32,
    /// `major:minor` of the filesystem (st_dev).
    pub major: u32,
    pub minor: u32,
    /// Root of the mount within the filesystem (`/` unless a bind mount of a subtree).
    pub root: String,
    pub(crate) mount_point: String,
    /// Per-mount options (`rw,relatime`).
    pub(crate) mount_options: String,
    /// Optional fields such as `shared:1`, `master:2`.
    pub(crate) optional_fields: Vec<String>,
    pub fstype: String,
    /// Mount source (`/dev/vda1`, `server:/export`, `none`).
    pub source: String,
    pub(crate) super_options: String,
}

impl MountInfo {
    /// `major:minor`.
    pub fn device_id(&self) -> String {
        format!("{}:{}", self.major, self.minor)
    }

    /// Mounted read-only (per-mount `ro`).
    pub fn read_only(&self) -> bool {
        self.mount_options.split(',').any(|o| o == "ro")
    }
}

/// A line that is not valid mountinfo; `line` is 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub(crate) struct ParseError {
    pub line: usize,
    pub reason: LineError,
}

/// What is wrong with one mountinfo line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LineError {
    /// The line ends before this field.
    #[error("missing {0}")]
    Missing(&'static str),
    /// This numeric field is not a number.
    #[error("{0} is not a number")]
    NotANumber(&'static str),
    /// The device field as written.
    #[error("{0:?} is not major:minor")]
    NotMajorMinor(String),
}

/// Decodes mountinfo's octal escapes (`\040` → space). A backslash not followed by three
/// octal digits is kept as it is.
pub(crate) fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = u32::from(oct[0] - b'0') * 64
                    + u32::from(oct[1] - b'0') * 8
                    + u32::from(oct[2] - b'0');
                if let Ok(byte) = u8::try_from(v) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses one line (without its newline).
///
/// # Errors
/// A [`LineError`] saying which part is wrong ([`parse`] adds the line number).
pub(crate) fn parse_line(line: &str) -> Result<MountInfo, LineError> {
    let mut it = line.split(' ');
    let mut next = |what: &'static str| {
        it.next()
            .filter(|s| !s.is_empty())
            .ok_or(LineError::Missing(what))
    };
    let mount_id = next("mount ID")?
        .parse()
        .map_err(|_| LineError::NotANumber("mount ID"))?;
    let parent_id = next("parent ID")?
        .parse()
        .map_err(|_| LineError::NotANumber("parent ID"))?;
    let dev = next("major:minor")?;
    let (major, minor) = dev
        .split_once(':')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .ok_or_else(|| LineError::NotMajorMinor(dev.to_string()))?;
    let root = unescape(next("root")?);
    let mount_point = unescape(next("mount point")?);
    let mount_options = next("mount options")?.to_string();
    let mut optional_fields = Vec::new();
    loop {
        let f = next("separator '-'")?;
        if f == "-" {
            break;
        }
        optional_fields.push(f.to_string());
    }
    let fstype = next("filesystem type")?.to_string();
    // The source may be empty on some kernels for some filesystems ("none" elsewhere), so
    // it is read without the non-empty filter.
    let source = unescape(it.next().ok_or(LineError::Missing("mount source"))?);
    let super_options = it.next().unwrap_or_default().to_string();
    Ok(MountInfo {
        mount_id,
        parent_id,
        major,
        minor,
        root,
        mount_point,
        mount_options,
        optional_fields,
        fstype,
        source,
        super_options,
    })
}

/// Parses a whole mountinfo file. Bad lines are returned as errors beside the good ones,
/// so one odd line does not hide every filesystem.
pub(crate) fn parse(text: &str) -> (Vec<MountInfo>, Vec<ParseError>) {
    let mut mounts = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line) {
            Ok(m) => mounts.push(m),
            Err(reason) => errors.push(ParseError {
                line: i + 1,
                reason,
            }),
        }
    }
    (mounts, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_proc5_example_with_optional_field() {
        let m = parse_line(
            "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue",
        )
        .unwrap();
        assert_eq!(
            m,
            MountInfo {
                mount_id: 36,
                parent_id: 35,
                major: 98,
                minor: 0,
                root: "/mnt1".into(),
                mount_point: "/mnt2".into(),
                mount_options: "rw,noatime".into(),
                optional_fields: vec!["master:1".into()],
                fstype: "ext3".into(),
                source: "/dev/root".into(),
                super_options: "rw,errors=continue".into(),
            }
        );
        assert_eq!(m.device_id(), "98:0");
        assert!(!m.read_only());
    }

    #[test]
    fn parses_several_and_no_optional_fields() {
        let none = parse_line("27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard").unwrap();
        assert!(none.optional_fields.is_empty());
        let two = parse_line("27 1 8:1 / /data ro,relatime shared:5 master:3 - xfs /dev/sda1 rw")
            .unwrap();
        assert_eq!(two.optional_fields, vec!["shared:5", "master:3"]);
        assert!(two.read_only());
    }

    #[test]
    fn decodes_octal_escapes_in_paths_and_source() {
        let m = parse_line(
            r"40 27 0:50 /sub\134dir /mnt/my\040disk\011x rw - fuse.sshfs user@h:/a\040b rw",
        )
        .unwrap();
        assert_eq!(m.root, "/sub\\dir");
        assert_eq!(m.mount_point, "/mnt/my disk\tx");
        assert_eq!(m.source, "user@h:/a b");
    }

    #[test]
    fn unescape_keeps_incomplete_or_non_octal_escapes() {
        assert_eq!(unescape(r"a\040b"), "a b");
        assert_eq!(unescape(r"a\012"), "a\n");
        assert_eq!(unescape(r"a\09"), r"a\09");
        assert_eq!(unescape(r"end\"), r"end\");
        assert_eq!(unescape(r"\777"), r"\777");
    }

    #[test]
    fn bad_lines_are_reported_with_their_number_and_the_rest_is_kept() {
        let text = "27 1 254:0 / / rw - ext4 /dev/vda rw\n\
                    garbage\n\
                    28 27 x:y / /a rw - ext4 /dev/b rw\n\
                    29 27 8:1 / /b rw shared:1\n\
                    30 27 8:2 / /c rw - xfs /dev/c rw\n";
        let (mounts, errors) = parse(text);
        assert_eq!(
            mounts
                .iter()
                .map(|m| m.mount_point.as_str())
                .collect::<Vec<_>>(),
            vec!["/", "/c"]
        );
        assert_eq!(
            errors,
            vec![
                ParseError {
                    line: 2,
                    reason: LineError::NotANumber("mount ID")
                },
                ParseError {
                    line: 3,
                    reason: LineError::NotMajorMinor("x:y".into())
                },
                ParseError {
                    line: 4,
                    reason: LineError::Missing("separator '-'")
                },
            ]
        );
        assert_eq!(
            errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec![
                "line 2: mount ID is not a number",
                "line 3: \"x:y\" is not major:minor",
                "line 4: missing separator '-'",
            ]
        );
    }
}
