//! One rotation policy (a logrotate block) and the directives that build it.
//!
//! [`Policy::apply`] is the single place where a directive gets its meaning: the
//! logrotate.conf parser ([`super::conf`]) and the agent's YAML ([`crate::config`]) both
//! go through it, so a directive means the same in both. Semantics follow logrotate
//! 3.21's manual; the differences are listed in `agent/LOGS.md`.

use std::path::PathBuf;

use nix::unistd::{Group, Uid, User};

use super::dateformat::DateFormat;

/// Why a directive or a block is refused. The messages are logrotate users' sentences
/// (tests and the logrotate corpus compare them byte for byte).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{name} takes no argument, found {found:?}")]
    NoArgument { name: String, found: String },
    #[error("weekly takes a weekday 0-7 (0 = Sunday, 7 = every 7 days), found {0:?}")]
    Weekday(String),
    #[error("weekly takes at most one argument (a weekday 0-7)")]
    WeeklyArguments,
    #[error("rotate takes a count (0 or more, or -1 to keep all), found {0:?}")]
    RotateCount(String),
    #[error("shredcycles is too large")]
    ShredcyclesTooLarge,
    #[error(transparent)]
    DateFormat(#[from] super::dateformat::Error),
    #[error(
        "compresscmd {0}: only gzip and zstd are built in; set logs.allow_compresscmd: true in the agent config to run other commands"
    )]
    Compresscmd(String),
    #[error("su takes a user and a group")]
    SuArguments,
    #[error(
        "{0} scripts are disabled: set logs.allow_scripts: true in the agent config to run them; this block is not loaded"
    )]
    ScriptsDisabled(String),
    #[error("unknown directive {0:?}")]
    UnknownDirective(String),
    #[error("a block needs at least one file pattern")]
    NoPattern,
    #[error("copy and copytruncate exclude each other")]
    CopyAndCopytruncate,
    #[error("file pattern {0:?} must be an absolute path")]
    RelativePattern(String),
    #[error("{name} {arg:?} must be part of a file name (no '/', no '..', no control characters)")]
    NamePart { name: String, arg: String },
    #[error("{0} needs an argument")]
    MissingArgument(String),
    #[error("{name} takes one argument, found {found:?}")]
    ArgumentCount { name: String, found: String },
    #[error("{name} takes a number, found {found:?}")]
    NotANumber { name: String, found: String },
    /// The size sentence is part of this message, not a cause printed after it.
    #[error("{name}: {problem}")]
    Size { name: String, problem: SizeError },
    #[error("compressoptions level {option} is out of range -{min}..-{max}")]
    LevelRange { option: String, min: i64, max: i64 },
    #[error("compressoptions {0:?} is not understood by the built-in compressor (only -LEVEL)")]
    CompressOption(String),
    #[error("{name}: mode {mode:?} is not octal")]
    ModeNotOctal { name: String, mode: String },
    #[error("{name}: mode {mode:?} is out of range")]
    ModeRange { name: String, mode: String },
    #[error("{name} takes [MODE] [OWNER [GROUP]], found {found:?}")]
    CreateArguments { name: String, found: String },
    #[error("unknown user {0:?}")]
    UnknownUser(String),
    #[error("unknown group {0:?}")]
    UnknownGroup(String),
}

/// Why a logrotate size does not parse.
#[derive(Debug, thiserror::Error)]
pub enum SizeError {
    #[error("{0:?} is not a size (write e.g. 100, 100k, 10M, 1G)")]
    NotASize(String),
    #[error("{0:?} is too large")]
    TooLarge(String),
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// The time criterion of a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Frequency {
    /// The hour (or day) changed since the last rotation.
    Hourly,
    /// The calendar day changed since the last rotation.
    Daily,
    /// The given weekday (0 = Sunday … 6 = Saturday) was reached on a later day, or at
    /// least 7 days passed; `7` means every 7 days regardless of weekday.
    Weekly(u8),
    /// The month changed.
    Monthly,
    /// The year changed.
    Yearly,
}

/// How a rotated file is compressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compressor {
    /// gzip format, written natively (parallel deflate). `level` 1..=9, default 6 as `gzip -6`.
    Gzip { level: u32 },
    /// zstd format, written natively. `level` 1..=19, default 3 as the `zstd` command.
    Zstd { level: i32 },
    /// Any other command, run as `CMD OPTIONS < rotated > archive`; only loaded when
    /// `logs.allow_compresscmd` is true.
    External {
        command: PathBuf,
        options: Vec<String>,
    },
}

impl Compressor {
    /// The extension the command's own tool would use (`compressext` overrides it).
    pub(crate) fn default_ext(&self) -> &str {
        match self {
            Compressor::Gzip { .. } => ".gz",
            Compressor::Zstd { .. } => ".zst",
            Compressor::External { command, .. } => {
                match command.file_name().and_then(|n| n.to_str()) {
                    Some("xz") => ".xz",
                    Some("bzip2" | "pbzip2") => ".bz2",
                    Some("lz4") => ".lz4",
                    _ => ".z",
                }
            }
        }
    }
}

/// Ownership and mode of a file or directory caretaker creates (`create`, `createolddir`).
/// A `None` field takes the original log file's value, as logrotate does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CreateSpec {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// Scripts of a block. Only loaded when `logs.allow_scripts` is true.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scripts {
    pub firstaction: Option<String>,
    pub prerotate: Option<String>,
    pub postrotate: Option<String>,
    pub lastaction: Option<String>,
    pub preremove: Option<String>,
    /// `sharedscripts`: pre/postrotate run once per block with the pattern as `$1`.
    pub shared: bool,
}

impl Scripts {
    /// Whether any script is set.
    pub fn any(&self) -> bool {
        self.firstaction.is_some()
            || self.prerotate.is_some()
            || self.postrotate.is_some()
            || self.lastaction.is_some()
            || self.preremove.is_some()
    }
}

/// The default taboo extensions of logrotate 3.21 (files in an included directory with
/// these endings are skipped).
pub(crate) const DEFAULT_TABOOEXT: &[&str] = &[
    ",v",
    ".cfsaved",
    ".disabled",
    ".dpkg-bak",
    ".dpkg-del",
    ".dpkg-dist",
    ".dpkg-new",
    ".dpkg-old",
    ".dpkg-tmp",
    ".rhn-cfg-tmp-*",
    ".rpmnew",
    ".rpmorig",
    ".rpmsave",
    ".swp",
    ".ucf-dist",
    ".ucf-new",
    ".ucf-old",
    "~",
];

/// A complete policy: what logrotate calls a log file definition, with the global
/// defaults that were in force when it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Glob patterns as written (after quote removal).
    pub patterns: Vec<String>,
    /// `file:line` of the block's opening line (or `logs.policies[i]`).
    pub place: String,
    /// `hourly`/`daily`/`weekly`/`monthly`/`yearly`; ignored while `size` is set.
    pub(crate) frequency: Option<Frequency>,
    /// `size N`: rotate when the file is at least N bytes, regardless of time. The last of
    /// `size` and a frequency wins, as in logrotate.
    pub size: Option<u64>,
    /// `minsize N`: with a frequency, also require at least N bytes.
    pub minsize: Option<u64>,
    /// `maxsize N`: with a frequency, rotate early when larger than N bytes.
    pub maxsize: Option<u64>,
    /// `rotate N`: archives kept; 0 removes the rotated file; -1 keeps all. Default 0.
    pub rotate: i64,
    /// `maxage N`: archives older than N days (mtime, strictly) are removed on rotation.
    pub(crate) maxage_days: Option<u64>,
    /// `minage N`: a log younger than N days (mtime) is not rotated.
    pub(crate) minage_days: Option<u64>,
    /// `start N`: first archive number. Default 1.
    pub start: u64,
    pub missingok: bool,
    /// `ifempty` (default true) / `notifempty`.
    pub ifempty: bool,
    /// `create [MODE [OWNER [GROUP]]]` / `nocreate` (default).
    pub create: Option<CreateSpec>,
    pub copytruncate: bool,
    pub copy: bool,
    /// `olddir DIR`, relative to the log's directory unless absolute.
    pub olddir: Option<PathBuf>,
    /// `createolddir [MODE OWNER GROUP]`.
    pub createolddir: Option<CreateSpec>,
    /// `extension EXT`: kept at the end of the archive name (before the compression ext).
    pub extension: Option<String>,
    pub dateext: bool,
    /// `dateformat`; default `-%Y%m%d`, `-%Y%m%d%H` for hourly.
    pub dateformat: Option<DateFormat>,
    pub dateyesterday: bool,
    pub compress: bool,
    pub(crate) compressor: Compressor,
    /// `compressext`; default from the compressor.
    pub compressext: Option<String>,
    pub delaycompress: bool,
    /// `shred`: overwrite before unlinking archives removed by retention.
    pub shred: bool,
    /// `shredcycles N`, default 3 (as GNU shred).
    pub shredcycles: u32,
    pub scripts: Scripts,
    /// `su USER GROUP`: owner of files and directories caretaker creates when `create`
    /// names none (see LOGS.md: caretaker does not switch its own uid).
    pub su: Option<(u32, u32)>,
    /// `allowhardlink`; default off: files with several links are skipped.
    pub allowhardlink: bool,
    /// `tabooext` list (affects later `include` of directories).
    pub tabooext: Vec<String>,
    /// `compressoptions` as written (for gzip and zstd only `-LEVEL` is understood).
    pub compressoptions: Option<String>,
    /// `taboopat` list: glob patterns of file names a later `include DIR` skips.
    pub(crate) taboopat: Vec<String>,
    /// `addextension EXT`: like `extension`, and a log whose name lacks EXT gets it too
    /// (`app` rotates to `app.1.log`).
    pub addextension: Option<String>,
    /// `datehourago`: the date extension uses the time one hour ago.
    pub datehourago: bool,
    /// `renamecopy`: the log is renamed to `LOG.tmp` in its own directory and, after
    /// postrotate, copied to its archive name (so `olddir` may be on another filesystem),
    /// as logrotate does.
    pub renamecopy: bool,
    /// `ignoreduplicates`: a log this block names that an earlier block named already is
    /// left to that block without an error.
    pub ignoreduplicates: bool,
    /// `mail ADDRESS` (`nomail`: `None`). caretaker does not send mail; the engine says
    /// so once per load.
    pub mail: Option<String>,
    /// `mailfirst` (true) / `maillast` (false, the default): which archive would be mailed.
    pub mailfirst: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            patterns: Vec::new(),
            place: String::new(),
            frequency: None,
            size: None,
            minsize: None,
            maxsize: None,
            rotate: 0,
            maxage_days: None,
            minage_days: None,
            start: 1,
            missingok: false,
            ifempty: true,
            create: None,
            copytruncate: false,
            copy: false,
            olddir: None,
            createolddir: None,
            extension: None,
            dateext: false,
            dateformat: None,
            dateyesterday: false,
            compress: false,
            compressor: Compressor::Gzip { level: 6 },
            compressext: None,
            delaycompress: false,
            shred: false,
            shredcycles: 3,
            scripts: Scripts::default(),
            su: None,
            allowhardlink: false,
            tabooext: DEFAULT_TABOOEXT.iter().map(|s| s.to_string()).collect(),
            compressoptions: None,
            taboopat: Vec::new(),
            addextension: None,
            datehourago: false,
            renamecopy: false,
            ignoreduplicates: false,
            mail: None,
            mailfirst: false,
        }
    }
}

/// What the loader allows beyond plain rotation (from the agent config).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Permissions {
    /// `logs.allow_scripts`: pre/postrotate, first/lastaction, preremove.
    pub scripts: bool,
    /// `logs.allow_compresscmd`: compression commands other than gzip and zstd.
    pub external_compress: bool,
}

/// Every directive name caretaker knows (for "unknown directive" errors and the YAML keys).
pub(crate) const DIRECTIVES: &[&str] = &[
    "hourly",
    "daily",
    "weekly",
    "monthly",
    "yearly",
    "size",
    "minsize",
    "maxsize",
    "rotate",
    "maxage",
    "minage",
    "start",
    "missingok",
    "nomissingok",
    "ifempty",
    "notifempty",
    "create",
    "nocreate",
    "copytruncate",
    "nocopytruncate",
    "copy",
    "nocopy",
    "olddir",
    "noolddir",
    "createolddir",
    "nocreateolddir",
    "extension",
    "dateext",
    "nodateext",
    "dateformat",
    "dateyesterday",
    "compress",
    "nocompress",
    "delaycompress",
    "nodelaycompress",
    "compresscmd",
    "uncompresscmd",
    "compressext",
    "compressoptions",
    "shred",
    "noshred",
    "shredcycles",
    "sharedscripts",
    "nosharedscripts",
    "su",
    "tabooext",
    "allowhardlink",
    "noallowhardlink",
    "nomail",
    "mail",
    "mailfirst",
    "maillast",
    "renamecopy",
    "norenamecopy",
    "addextension",
    "datehourago",
    "taboopat",
    "ignoreduplicates",
    "include",
    "prerotate",
    "postrotate",
    "firstaction",
    "lastaction",
    "preremove",
];

/// The script directives (their body runs up to `endscript`).
pub(crate) const SCRIPT_DIRECTIVES: &[&str] = &[
    "prerotate",
    "postrotate",
    "firstaction",
    "lastaction",
    "preremove",
];

impl Policy {
    /// Applies one directive (`name` with its whitespace-separated `args`; `script` is the
    /// body of a script directive).
    ///
    /// # Errors
    /// A sentence saying what is wrong: unknown directive, bad or missing argument, a
    /// script or external compressor that the agent config does not allow.
    pub fn apply(
        &mut self,
        name: &str,
        args: &[String],
        script: Option<&str>,
        perms: Permissions,
    ) -> Result<()> {
        let no_args = |p: &mut Self, f: fn(&mut Self)| -> Result<()> {
            if !args.is_empty() {
                return Err(Error::NoArgument {
                    name: name.to_string(),
                    found: args.join(" "),
                });
            }
            f(p);
            Ok(())
        };
        match name {
            "hourly" => no_args(self, |p| p.set_frequency(Frequency::Hourly)),
            "daily" => no_args(self, |p| p.set_frequency(Frequency::Daily)),
            "monthly" => no_args(self, |p| p.set_frequency(Frequency::Monthly)),
            "yearly" => no_args(self, |p| p.set_frequency(Frequency::Yearly)),
            "weekly" => {
                let day = match args {
                    [] => 0,
                    [d] => match d.parse::<u8>() {
                        Ok(n) if n <= 7 => n,
                        _ => {
                            return Err(Error::Weekday(d.clone()));
                        }
                    },
                    _ => return Err(Error::WeeklyArguments),
                };
                self.set_frequency(Frequency::Weekly(day));
                Ok(())
            }
            "size" => {
                self.size = Some(one_size(name, args)?);
                Ok(())
            }
            "minsize" => {
                self.minsize = Some(one_size(name, args)?);
                Ok(())
            }
            "maxsize" => {
                self.maxsize = Some(one_size(name, args)?);
                Ok(())
            }
            "rotate" => {
                let n = one_arg(name, args)?;
                self.rotate = match n.parse::<i64>() {
                    Ok(v) if v >= -1 => v,
                    _ => {
                        return Err(Error::RotateCount(n.to_string()));
                    }
                };
                Ok(())
            }
            "maxage" => {
                self.maxage_days = Some(one_u64(name, args)?);
                Ok(())
            }
            "minage" => {
                self.minage_days = Some(one_u64(name, args)?);
                Ok(())
            }
            "start" => {
                self.start = one_u64(name, args)?;
                Ok(())
            }
            "shredcycles" => {
                self.shredcycles =
                    u32::try_from(one_u64(name, args)?).map_err(|_| Error::ShredcyclesTooLarge)?;
                Ok(())
            }
            "missingok" => no_args(self, |p| p.missingok = true),
            "nomissingok" => no_args(self, |p| p.missingok = false),
            "ifempty" => no_args(self, |p| p.ifempty = true),
            "notifempty" => no_args(self, |p| p.ifempty = false),
            "nocreate" => no_args(self, |p| p.create = None),
            "copytruncate" => no_args(self, |p| p.copytruncate = true),
            "nocopytruncate" => no_args(self, |p| p.copytruncate = false),
            "copy" => no_args(self, |p| p.copy = true),
            "nocopy" => no_args(self, |p| p.copy = false),
            "noolddir" => no_args(self, |p| p.olddir = None),
            "nocreateolddir" => no_args(self, |p| p.createolddir = None),
            "dateext" => no_args(self, |p| p.dateext = true),
            "nodateext" => no_args(self, |p| p.dateext = false),
            "dateyesterday" => no_args(self, |p| p.dateyesterday = true),
            "compress" => no_args(self, |p| p.compress = true),
            "nocompress" => no_args(self, |p| p.compress = false),
            "delaycompress" => no_args(self, |p| p.delaycompress = true),
            "nodelaycompress" => no_args(self, |p| p.delaycompress = false),
            "shred" => no_args(self, |p| p.shred = true),
            "noshred" => no_args(self, |p| p.shred = false),
            "sharedscripts" => no_args(self, |p| p.scripts.shared = true),
            "nosharedscripts" => no_args(self, |p| p.scripts.shared = false),
            "allowhardlink" => no_args(self, |p| p.allowhardlink = true),
            "noallowhardlink" => no_args(self, |p| p.allowhardlink = false),
            "nomail" => no_args(self, |p| p.mail = None),
            "mailfirst" => no_args(self, |p| p.mailfirst = true),
            "maillast" => no_args(self, |p| p.mailfirst = false),
            "renamecopy" => no_args(self, |p| p.renamecopy = true),
            "norenamecopy" => no_args(self, |p| p.renamecopy = false),
            "datehourago" => no_args(self, |p| p.datehourago = true),
            "ignoreduplicates" => no_args(self, |p| p.ignoreduplicates = true),
            "mail" => {
                self.mail = Some(one_arg(name, args)?.to_string());
                Ok(())
            }
            "addextension" => {
                self.addextension = Some(name_part(name, one_arg(name, args)?)?.to_string());
                Ok(())
            }
            "taboopat" => {
                let (add, list) = split_plus(args);
                if !add {
                    self.taboopat.clear();
                }
                self.taboopat.extend(list);
                Ok(())
            }
            "create" => {
                self.create = Some(create_spec(name, args)?);
                Ok(())
            }
            "createolddir" => {
                self.createolddir = Some(create_spec(name, args)?);
                Ok(())
            }
            "olddir" => {
                self.olddir = Some(PathBuf::from(one_arg(name, args)?));
                Ok(())
            }
            "extension" => {
                self.extension = Some(name_part(name, one_arg(name, args)?)?.to_string());
                Ok(())
            }
            "dateformat" => {
                self.dateformat = Some(DateFormat::parse(one_arg(name, args)?)?);
                Ok(())
            }
            "compressext" => {
                self.compressext = Some(name_part(name, one_arg(name, args)?)?.to_string());
                Ok(())
            }
            "uncompresscmd" => {
                // Only used by logrotate for mailing; caretaker never uncompresses.
                one_arg(name, args)?;
                Ok(())
            }
            "compresscmd" => {
                let cmd = one_arg(name, args)?;
                let base = cmd.rsplit('/').next().unwrap_or(cmd);
                self.compressor = match base {
                    "gzip" | "pigz" => Compressor::Gzip { level: 6 },
                    "zstd" | "pzstd" | "zstdmt" => Compressor::Zstd { level: 3 },
                    _ if perms.external_compress => Compressor::External {
                        command: cmd.into(),
                        options: Vec::new(),
                    },
                    _ => {
                        return Err(Error::Compresscmd(cmd.to_string()));
                    }
                };
                self.apply_compressoptions()
            }
            "compressoptions" => {
                self.compressoptions = Some(args.join(" "));
                self.apply_compressoptions()
            }
            "su" => {
                let (user, group) = match args {
                    [u] => (u.as_str(), None),
                    [u, g] => (u.as_str(), Some(g.as_str())),
                    _ => return Err(Error::SuArguments),
                };
                let uid = resolve_user(user)?;
                let gid = match group {
                    Some(g) => resolve_group(g)?,
                    None => User::from_uid(Uid::from_raw(uid))
                        .ok()
                        .flatten()
                        .map_or(0, |u| u.gid.as_raw()),
                };
                self.su = Some((uid, gid));
                Ok(())
            }
            "tabooext" => {
                let (add, list) = split_plus(args);
                if !add {
                    self.tabooext.clear();
                }
                self.tabooext.extend(list);
                Ok(())
            }
            s if SCRIPT_DIRECTIVES.contains(&s) => {
                if !perms.scripts {
                    return Err(Error::ScriptsDisabled(s.to_string()));
                }
                let body = script.unwrap_or_default().to_string();
                let slot = match s {
                    "prerotate" => &mut self.scripts.prerotate,
                    "postrotate" => &mut self.scripts.postrotate,
                    "firstaction" => &mut self.scripts.firstaction,
                    "lastaction" => &mut self.scripts.lastaction,
                    _ => &mut self.scripts.preremove,
                };
                *slot = Some(body);
                Ok(())
            }
            _ => Err(Error::UnknownDirective(name.to_string())),
        }
    }

    fn set_frequency(&mut self, f: Frequency) {
        // "the last specified option takes the precedence" between size and time.
        self.frequency = Some(f);
        self.size = None;
    }

    fn apply_compressoptions(&mut self) -> Result<()> {
        let Some(opts) = self.compressoptions.clone() else {
            return Ok(());
        };
        match &mut self.compressor {
            Compressor::Gzip { level } => {
                *level = level_from(&opts, 1, 9)?.map_or(*level, |l| l as u32)
            }
            Compressor::Zstd { level } => {
                *level = level_from(&opts, 1, 19)?.map_or(*level, |l| l as i32)
            }
            Compressor::External { options, .. } => {
                *options = opts.split_whitespace().map(String::from).collect()
            }
        }
        Ok(())
    }

    /// The `dateformat` in force (the default depends on `hourly`).
    pub fn dateformat(&self) -> DateFormat {
        self.dateformat.clone().unwrap_or_else(|| {
            DateFormat::parse(if self.frequency == Some(Frequency::Hourly) {
                "-%Y%m%d%H"
            } else {
                "-%Y%m%d"
            })
            .unwrap_or_else(|_| unreachable!("constant date formats parse"))
        })
    }

    /// The compression extension in force (`.gz` by default).
    pub(crate) fn compress_ext(&self) -> String {
        self.compressext
            .clone()
            .unwrap_or_else(|| self.compressor.default_ext().to_string())
    }

    /// Checks combinations that only make sense together.
    ///
    /// # Errors
    /// A sentence naming the conflicting directives.
    pub fn validate(&self) -> Result<()> {
        if self.patterns.is_empty() {
            return Err(Error::NoPattern);
        }
        if self.copy && self.copytruncate {
            return Err(Error::CopyAndCopytruncate);
        }
        for p in &self.patterns {
            if !p.starts_with('/') {
                return Err(Error::RelativePattern(p.clone()));
            }
        }
        Ok(())
    }
}

/// An argument that becomes part of a file name (`extension`, `addextension`,
/// `compressext`): no `/`, no `..`, no control characters, so an archive name never
/// leaves the log's directory.
fn name_part<'a>(name: &str, arg: &'a str) -> Result<&'a str> {
    if arg.contains('/') || arg.contains("..") || arg.chars().any(char::is_control) {
        return Err(Error::NamePart {
            name: name.to_string(),
            arg: arg.to_string(),
        });
    }
    Ok(arg)
}

/// Whether a directive name is one caretaker knows (the parser warns about others and
/// ignores their line, as logrotate does).
pub(crate) fn is_directive(name: &str) -> bool {
    DIRECTIVES.contains(&name)
}

/// `[+] A,B C` (tabooext/taboopat): whether to add to the list, and the items.
fn split_plus(args: &[String]) -> (bool, Vec<String>) {
    let (add, list) = match args.first().map(String::as_str) {
        Some("+") => (true, &args[1..]),
        _ => (false, args),
    };
    let items = list
        .iter()
        .flat_map(|a| a.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    (add, items)
}

fn one_arg<'a>(name: &str, args: &'a [String]) -> Result<&'a str> {
    match args {
        [a] => Ok(a),
        [] => Err(Error::MissingArgument(name.to_string())),
        _ => Err(Error::ArgumentCount {
            name: name.to_string(),
            found: args.join(" "),
        }),
    }
}

fn one_u64(name: &str, args: &[String]) -> Result<u64> {
    let a = one_arg(name, args)?;
    parse_c_number(a).ok_or_else(|| Error::NotANumber {
        name: name.to_string(),
        found: a.to_string(),
    })
}

/// strtoul-style: decimal, `0x` hex or leading-0 octal.
fn parse_c_number(s: &str) -> Option<u64> {
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else if s.len() > 1 && s.starts_with('0') {
        u64::from_str_radix(&s[1..], 8).ok()
    } else {
        s.parse().ok()
    }
}

fn one_size(name: &str, args: &[String]) -> Result<u64> {
    parse_size(one_arg(name, args)?).map_err(|problem| Error::Size {
        name: name.to_string(),
        problem,
    })
}

/// A logrotate size: bytes, or with a `k`, `M` or `G` suffix (powers of 1024).
///
/// # Errors
/// Not a number with an optional suffix.
pub(crate) fn parse_size(s: &str) -> Result<u64, SizeError> {
    let (num, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1024),
        Some('M') => (&s[..s.len() - 1], 1024 * 1024),
        Some('G') => (&s[..s.len() - 1], 1024 * 1024 * 1024),
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| SizeError::NotASize(s.to_string()))?;
    n.checked_mul(mult)
        .ok_or_else(|| SizeError::TooLarge(s.to_string()))
}

fn level_from(opts: &str, min: i64, max: i64) -> Result<Option<i64>> {
    let mut level = None;
    for o in opts.split_whitespace() {
        if let Some(n) = o.strip_prefix('-').and_then(|d| d.parse::<i64>().ok()) {
            if !(min..=max).contains(&n) {
                return Err(Error::LevelRange {
                    option: o.to_string(),
                    min,
                    max,
                });
            }
            level = Some(n);
        } else if o.starts_with("-T")
            || o == "--rsyncable"
            || o == "-q"
            || o == "--quiet"
            || o == "-n"
            || o == "--no-name"
        {
            // Thread counts and cosmetic flags do not change the format.
        } else {
            return Err(Error::CompressOption(o.to_string()));
        }
    }
    Ok(level)
}

fn create_spec(name: &str, args: &[String]) -> Result<CreateSpec> {
    let mut spec = CreateSpec::default();
    let mut rest = args;
    if let Some(first) = rest.first()
        && first.chars().all(|c| c.is_ascii_digit())
    {
        let mode = u32::from_str_radix(first, 8).map_err(|_| Error::ModeNotOctal {
            name: name.to_string(),
            mode: first.clone(),
        })?;
        if mode > 0o7777 {
            return Err(Error::ModeRange {
                name: name.to_string(),
                mode: first.clone(),
            });
        }
        spec.mode = Some(mode);
        rest = &rest[1..];
    }
    match rest {
        [] => {}
        [o] => spec.uid = Some(resolve_user(o)?),
        [o, g] => {
            spec.uid = Some(resolve_user(o)?);
            spec.gid = Some(resolve_group(g)?);
        }
        _ => {
            return Err(Error::CreateArguments {
                name: name.to_string(),
                found: args.join(" "),
            });
        }
    }
    Ok(spec)
}

/// A user name or number (names first, as logrotate does).
fn resolve_user(s: &str) -> Result<u32> {
    match User::from_name(s) {
        Ok(Some(u)) => Ok(u.uid.as_raw()),
        _ => s.parse().map_err(|_| Error::UnknownUser(s.to_string())),
    }
}

fn resolve_group(s: &str) -> Result<u32> {
    match Group::from_name(s) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        _ => s.parse().map_err(|_| Error::UnknownGroup(s.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(p: &mut Policy, line: &str) -> Result<(), String> {
        let mut it = line.split_whitespace();
        let name = it.next().unwrap();
        let args: Vec<String> = it.map(String::from).collect();
        p.apply(name, &args, None, Permissions::default())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn last_of_size_and_frequency_wins() {
        let mut p = Policy::default();
        apply(&mut p, "daily").unwrap();
        apply(&mut p, "size 10k").unwrap();
        assert_eq!(
            (p.frequency, p.size),
            (Some(Frequency::Daily), Some(10 * 1024))
        );
        apply(&mut p, "weekly 3").unwrap();
        assert_eq!((p.frequency, p.size), (Some(Frequency::Weekly(3)), None));
    }

    #[test]
    fn sizes_use_binary_suffixes() {
        assert_eq!(parse_size("100").unwrap(), 100);
        assert_eq!(parse_size("100k").unwrap(), 102_400);
        assert_eq!(parse_size("2M").unwrap(), 2 * 1024 * 1024);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert!(
            parse_size("1T")
                .unwrap_err()
                .to_string()
                .contains("is not a size")
        );
    }

    #[test]
    fn create_takes_optional_mode_owner_group() {
        let mut p = Policy::default();
        apply(&mut p, "create 0640 root root").unwrap();
        assert_eq!(
            p.create,
            Some(CreateSpec {
                mode: Some(0o640),
                uid: Some(0),
                gid: Some(0)
            })
        );
        apply(&mut p, "create").unwrap();
        assert_eq!(p.create, Some(CreateSpec::default()));
        apply(&mut p, "create 0600").unwrap();
        assert_eq!(
            p.create,
            Some(CreateSpec {
                mode: Some(0o600),
                uid: None,
                gid: None
            })
        );
        assert!(
            apply(&mut p, "create 0640 nosuchuser-x root")
                .unwrap_err()
                .contains("unknown user")
        );
    }

    #[test]
    fn compresscmd_outside_gzip_and_zstd_needs_permission() {
        let mut p = Policy::default();
        apply(&mut p, "compresscmd /usr/bin/zstd").unwrap();
        apply(&mut p, "compressoptions -9").unwrap();
        assert_eq!(p.compressor, Compressor::Zstd { level: 9 });
        assert_eq!(p.compress_ext(), ".zst");
        let err = apply(&mut p, "compresscmd /usr/bin/xz").unwrap_err();
        assert!(err.contains("allow_compresscmd"), "{err}");
        let args = vec!["/usr/bin/xz".to_string()];
        p.apply(
            "compresscmd",
            &args,
            None,
            Permissions {
                external_compress: true,
                scripts: false,
            },
        )
        .unwrap();
        assert_eq!(p.compress_ext(), ".xz");
    }

    #[test]
    fn scripts_are_refused_unless_allowed() {
        let mut p = Policy::default();
        let err = p
            .apply(
                "postrotate",
                &[],
                Some("kill -HUP 1"),
                Permissions::default(),
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("allow_scripts"), "{err}");
        p.apply(
            "postrotate",
            &[],
            Some("kill -HUP 1"),
            Permissions {
                scripts: true,
                external_compress: false,
            },
        )
        .unwrap();
        assert_eq!(p.scripts.postrotate.as_deref(), Some("kill -HUP 1"));
    }

    #[test]
    fn malformed_arguments_say_what_is_wrong() {
        let mut p = Policy::default();
        assert_eq!(
            apply(&mut p, "rotate x").unwrap_err(),
            "rotate takes a count (0 or more, or -1 to keep all), found \"x\""
        );
        assert_eq!(
            apply(&mut p, "compress now").unwrap_err(),
            "compress takes no argument, found \"now\""
        );
        assert_eq!(
            apply(&mut p, "rotat 5").unwrap_err(),
            "unknown directive \"rotat\""
        );
        assert!(
            apply(&mut p, "weekly 9")
                .unwrap_err()
                .contains("weekday 0-7")
        );
        apply(&mut p, "rotate -1").unwrap();
        assert_eq!(p.rotate, -1);
    }

    #[test]
    fn tabooext_replaces_or_extends() {
        let mut p = Policy::default();
        apply(&mut p, "tabooext + .bak").unwrap();
        assert!(p.tabooext.contains(&".bak".to_string()) && p.tabooext.contains(&"~".to_string()));
        apply(&mut p, "tabooext .a,.b").unwrap();
        assert_eq!(p.tabooext, vec![".a".to_string(), ".b".to_string()]);
    }
}
