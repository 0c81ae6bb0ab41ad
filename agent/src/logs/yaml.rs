//! Policies written in the agent's YAML: the same directive names as logrotate, with the
//! same meaning, because each key is turned into the directive and applied by
//! [`Policy::apply`].
//!
//! ```yaml
//! logs:
//!   policies:
//!     - files: ["/var/log/containers/*.log"]
//!       daily: true          # flags: true applies the directive, false its "no" form
//!       rotate: 7            # numbers and sizes as in logrotate
//!       compress: true
//!       missingok: true
//!       notifempty: true
//!       dateext: true
//!       dateformat: "-%Y%m%d-%s"
//!       create: "0644 root root"
//! ```

use serde::{Deserialize, Serialize};

use super::policy::{DIRECTIVES, Permissions, Policy, SCRIPT_DIRECTIVES};

/// A directive's value in YAML. It is checked by the directive itself
/// ([`Policy::apply`], as logrotate's parser would), not here: a bad value is one of the
/// policy's errors, listed with the others, instead of failing the whole config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Arg {
    Bool(bool),
    Int(i64),
    Str(String),
}

macro_rules! policy_config {
    ($($field:ident),* $(,)?) => {
        /// One policy (a logrotate block). `files` are the block's absolute globs; every
        /// other key is a logrotate directive (see `agent/LOGS.md` for each one's meaning
        /// and default). A flag takes `true` (the directive) or `false` (its `no` form,
        /// e.g. `compress: false` is `nocompress`); a directive with arguments takes them as
        /// a number or a string, as logrotate would read them (`size: 100M`, `rotate: 7`,
        /// `create: "0640 root adm"`). Unset keys keep logrotate's defaults.
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct PolicyConfig {
            /// Absolute glob patterns of the logs.
            pub files: Vec<String>,
            $( #[serde(default, skip_serializing_if = "Option::is_none")] pub $field: Option<Arg>, )*
        }

        impl PolicyConfig {
            fn fields(&self) -> Vec<(&'static str, &Option<Arg>)> {
                vec![$((stringify!($field), &self.$field)),*]
            }
        }
    };
}

policy_config!(
    hourly,
    daily,
    weekly,
    monthly,
    yearly,
    size,
    minsize,
    maxsize,
    rotate,
    maxage,
    minage,
    start,
    missingok,
    ifempty,
    notifempty,
    create,
    copytruncate,
    copy,
    olddir,
    createolddir,
    extension,
    dateext,
    dateformat,
    dateyesterday,
    compress,
    delaycompress,
    compresscmd,
    compressext,
    compressoptions,
    shred,
    shredcycles,
    sharedscripts,
    su,
    tabooext,
    allowhardlink,
    prerotate,
    postrotate,
    firstaction,
    lastaction,
    preremove,
);

impl PolicyConfig {
    /// Builds the policy; `index` names it in errors (`logs.policies[INDEX].KEY`).
    ///
    /// # Errors
    /// Every bad key, each as `(place, message)`.
    pub(crate) fn to_policy(
        &self,
        index: usize,
        perms: Permissions,
    ) -> Result<Policy, Vec<(String, String)>> {
        let place = |k: &str| format!("logs.policies[{index}].{k}");
        let mut p = Policy {
            patterns: self.files.clone(),
            place: format!("logs.policies[{index}]"),
            ..Policy::default()
        };
        let mut errors = Vec::new();
        for (name, value) in self.fields() {
            let Some(v) = value else { continue };
            debug_assert!(DIRECTIVES.contains(&name));
            let res = match v {
                Arg::Bool(true) => p.apply(name, &[], None, perms),
                Arg::Bool(false) => match negation(name) {
                    Some(neg) => p.apply(neg, &[], None, perms),
                    None => Ok(()),
                },
                Arg::Int(n) => p.apply(name, &[n.to_string()], None, perms),
                Arg::Str(s) if SCRIPT_DIRECTIVES.contains(&name) => {
                    p.apply(name, &[], Some(s), perms)
                }
                Arg::Str(s) => match super::conf::shell_words(s) {
                    Ok(words) => p.apply(name, &words, None, perms),
                    Err(e) => {
                        errors.push((place(name), e.to_string()));
                        Ok(())
                    }
                },
            };
            if let Err(e) = res {
                errors.push((place(name), e.to_string()));
            }
        }
        if errors.is_empty()
            && let Err(e) = p.validate()
        {
            errors.push((place("files"), e.to_string()));
        }
        if errors.is_empty() {
            Ok(p)
        } else {
            Err(errors)
        }
    }
}

fn negation(name: &str) -> Option<&'static str> {
    Some(match name {
        "ifempty" => "notifempty",
        "notifempty" => "ifempty",
        "missingok" => "nomissingok",
        "create" => "nocreate",
        "copytruncate" => "nocopytruncate",
        "copy" => "nocopy",
        "olddir" => "noolddir",
        "createolddir" => "nocreateolddir",
        "dateext" => "nodateext",
        "compress" => "nocompress",
        "delaycompress" => "nodelaycompress",
        "shred" => "noshred",
        "sharedscripts" => "nosharedscripts",
        "allowhardlink" => "noallowhardlink",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::logs::conf::parse_str;

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Wrap {
        #[serde(default)]
        policies: Vec<PolicyConfig>,
    }

    #[test]
    fn yaml_and_logrotate_conf_give_the_same_policy() {
        let yaml = "policies:\n  - files: [\"/var/log/containers/*.log\"]\n    daily: true\n    rotate: 7\n    compress: true\n    missingok: true\n    notifempty: true\n    dateext: true\n    dateformat: \"-%Y%m%d-%s\"\n    create: \"0644 root root\"\n";
        let w: Wrap = caretaker_core::config::parse_yaml(yaml, Path::new("a.yaml")).unwrap();
        let mut from_yaml = w.policies[0].to_policy(0, Permissions::default()).unwrap();
        let conf = "/var/log/containers/*.log {\n  daily\n  rotate 7\n  compress\n  missingok\n  notifempty\n  dateext\n  dateformat -%Y%m%d-%s\n  create 0644 root root\n}\n";
        let from_conf = parse_str(conf, "c", Permissions::default())
            .policies
            .remove(0);
        from_yaml.place = from_conf.place.clone();
        assert_eq!(from_yaml, from_conf);
    }

    #[test]
    fn bad_values_name_the_policy_and_key_and_unknown_keys_name_the_line() {
        let w: Wrap = caretaker_core::config::parse_yaml(
            "policies:\n  - files: [/a.log]\n    rotate: many\n    compress: false\n",
            Path::new("a.yaml"),
        )
        .unwrap();
        let errs = w.policies[0]
            .to_policy(3, Permissions::default())
            .unwrap_err();
        assert_eq!(
            errs,
            vec![(
                "logs.policies[3].rotate".to_string(),
                "rotate takes a count (0 or more, or -1 to keep all), found \"many\"".to_string()
            )]
        );
        let err = caretaker_core::config::parse_yaml::<Wrap>(
            "policies:\n  - files: [/a.log]\n    rotat: 2\n",
            Path::new("a.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("rotat") && err.contains("line 3"), "{err}");
    }
}
