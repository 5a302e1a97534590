//! `mco completion bash|zsh|fish`: a completion script for the shell.
//!
//! clap_complete writes the script from the clap definition (applications,
//! subcommands, flags). What it cannot know statically, the agents and
//! actions of `mco rpc AGENT ACTION`, comes from the DDLs this client
//! knows when the script is generated: the built-in agents and those in
//! the client config's `plugin.external.agents_dir`. The agent names are
//! given to clap as possible values of `rpc`'s AGENT (for the generation
//! only, so any agent name still parses), and each shell gets a small
//! addition that offers the chosen agent's actions for ACTION and the
//! agent names for `mco plugin doc`:
//!
//! | shell | applications, flags | rpc AGENT | rpc ACTION | plugin doc NAME |
//! | --- | --- | --- | --- | --- |
//! | bash | yes | yes | yes | yes |
//! | zsh  | yes | yes, described | yes, described | no |
//! | fish | yes | yes, described | yes, described | yes |
//!
//! Regenerate the script after adding an external agent's DDL.

use std::io::Write;
use std::path::PathBuf;

use clap::builder::PossibleValue;
use muster_client::ClientConfig;
use muster_protocol::ddl::Ddl;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: Shell,
    /// Client config file whose external agent DDLs to complete too
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The shells a script can be written for.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// An agent and its actions, as completions offer them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Agent {
    pub name: String,
    pub description: String,
    /// (action, description), in DDL order.
    pub actions: Vec<(String, String)>,
}

impl From<&Ddl> for Agent {
    fn from(ddl: &Ddl) -> Agent {
        Agent {
            name: ddl.metadata.name.clone(),
            description: ddl.metadata.description.clone(),
            actions: ddl
                .actions
                .iter()
                .map(|a| (a.action.clone(), a.description.clone()))
                .collect(),
        }
    }
}

pub(crate) fn run(args: Args, cli: clap::Command) -> anyhow::Result<u8> {
    let agents = known_agents(args.config.as_deref());
    let mut out = std::io::stdout().lock();
    write_script(&mut out, args.shell, cli, &agents)?;
    out.flush()?;
    Ok(super::EXIT_OK)
}

/// The agents in the DDLs the client knows; only the built-in ones when
/// the config cannot be read (said on stderr).
pub(crate) fn known_agents(config: Option<&std::path::Path>) -> Vec<Agent> {
    let ddls = match ClientConfig::load(config) {
        Ok(config) => muster_client::ddls::all_ddls(&config),
        Err(e) => {
            eprintln!("mco: completing the built-in agents only: {e}");
            muster_protocol::ddl::builtin_names()
                .into_iter()
                .filter_map(muster_protocol::ddl::builtin)
                .cloned()
                .collect()
        }
    };
    ddls.iter().map(Agent::from).collect()
}

/// The whole script for `shell`.
pub(crate) fn write_script(
    out: &mut dyn Write,
    shell: Shell,
    cli: clap::Command,
    agents: &[Agent],
) -> anyhow::Result<()> {
    // Only zsh completes positionals one by one; bash and fish get the
    // agents from the additions below.
    let mut cli = match shell {
        Shell::Zsh => with_agent_names(cli, agents),
        Shell::Bash | Shell::Fish => cli,
    };
    let mut generated = Vec::new();
    match shell {
        Shell::Bash => {
            clap_complete::generate(clap_complete::Shell::Bash, &mut cli, "mco", &mut generated)
        }
        Shell::Zsh => {
            clap_complete::generate(clap_complete::Shell::Zsh, &mut cli, "mco", &mut generated)
        }
        Shell::Fish => {
            clap_complete::generate(clap_complete::Shell::Fish, &mut cli, "mco", &mut generated)
        }
    }
    let generated = String::from_utf8(generated)?;
    let value_flags = value_flags(&cli);
    let agents: Vec<&Agent> = agents.iter().filter(|a| is_word(&a.name)).collect();
    match shell {
        Shell::Bash => {
            out.write_all(generated.as_bytes())?;
            out.write_all(bash(&agents, &value_flags).as_bytes())?;
        }
        Shell::Zsh => {
            let generated = generated.replace(ACTIONS_SENTINEL_ZSH, "_mco_ddl_actions");
            // Before the last lines, which run `_mco` when zsh autoloads the file.
            let tail = generated
                .rfind("if [ \"$funcstack[1]\" = \"_mco\" ]")
                .unwrap_or(generated.len());
            write!(out, "{}", &generated[..tail])?;
            out.write_all(zsh(&agents, &value_flags).as_bytes())?;
            write!(out, "{}", &generated[tail..])?;
        }
        Shell::Fish => {
            out.write_all(generated.as_bytes())?;
            out.write_all(fish(&agents, &value_flags).as_bytes())?;
        }
    }
    Ok(())
}

/// What clap writes for ACTION's one possible value in the zsh script;
/// replaced by the function that offers the chosen agent's actions.
const ACTIONS_SENTINEL: &str = "__mco_ddl_actions__";
const ACTIONS_SENTINEL_ZSH: &str = "(__mco_ddl_actions__)";

/// `cli` with the agents as possible values of `rpc`'s AGENT (and a
/// placeholder for ACTION), for generating completions only: parsing keeps
/// accepting any agent.
fn with_agent_names(cli: clap::Command, agents: &[Agent]) -> clap::Command {
    // clap wants 'static names; this runs once in a short-lived process.
    let values: Vec<PossibleValue> = agents
        .iter()
        .filter(|a| is_word(&a.name))
        .map(|a| PossibleValue::new(a.name.clone().leak() as &str).help(summary(&a.description)))
        .collect();
    cli.mut_subcommand("rpc", |mut rpc| {
        // mut_arg moves an argument to the end; visiting every positional
        // in order keeps their order (and so their indexes).
        let positionals: Vec<String> = rpc
            .get_positionals()
            .map(|a| a.get_id().to_string())
            .collect();
        for id in positionals {
            rpc = rpc.mut_arg(id.as_str(), |arg| match id.as_str() {
                "agent" => {
                    arg.value_parser(clap::builder::PossibleValuesParser::new(values.clone()))
                }
                "action" => arg.value_parser([ACTIONS_SENTINEL]),
                _ => arg,
            });
        }
        rpc
    })
}

/// The flags of `mco` and of `mco rpc` and `mco plugin` that take a value,
/// so the scripts can tell a flag's value from AGENT and ACTION.
fn value_flags(cli: &clap::Command) -> Vec<String> {
    let mut commands = vec![cli];
    commands.extend(
        ["rpc", "plugin"]
            .iter()
            .filter_map(|name| cli.find_subcommand(name)),
    );
    let mut flags: Vec<String> = Vec::new();
    for command in commands {
        for arg in command.get_arguments() {
            if arg.is_positional() || !arg.get_action().takes_values() {
                continue;
            }
            flags.extend(
                arg.get_short_and_visible_aliases()
                    .into_iter()
                    .flatten()
                    .map(|c| format!("-{c}")),
            );
            flags.extend(
                arg.get_long_and_visible_aliases()
                    .into_iter()
                    .flatten()
                    .map(|l| format!("--{l}")),
            );
            flags.extend(
                arg.get_all_aliases()
                    .into_iter()
                    .flatten()
                    .map(|l| format!("--{l}")),
            );
        }
    }
    flags.sort();
    flags.dedup();
    flags
}

/// Names that need no quoting in any shell.
fn is_word(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A description's first sentence, short enough for a completion menu.
fn summary(description: &str) -> String {
    let first = description
        .split_once(". ")
        .map_or(description, |(first, _)| first)
        .trim()
        .trim_end_matches('.');
    if first.chars().count() > 70 {
        let cut: String = first.chars().take(69).collect();
        format!("{cut}…")
    } else {
        first.to_string()
    }
}

/// `text` in single quotes for bash, zsh and fish alike (no `'` inside).
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "’").replace('\\', "/"))
}

fn bash(agents: &[&Agent], value_flags: &[String]) -> String {
    let names: Vec<&str> = agents.iter().map(|a| a.name.as_str()).collect();
    let mut actions = String::new();
    for agent in agents {
        let list: Vec<&str> = agent
            .actions
            .iter()
            .map(|(a, _)| a.as_str())
            .filter(|a| is_word(a))
            .collect();
        actions.push_str(&format!(
            "        {}) echo {} ;;\n",
            agent.name,
            quoted(&list.join(" "))
        ));
    }
    format!(
        r#"
# muster: agents and actions for `mco rpc AGENT ACTION` and `mco plugin doc
# AGENT`, from the DDLs mco knew when this script was written, and the
# custom applications (mco-NAME) on PATH.
_mco_ddl_agents={agents}
_mco_ddl_actions() {{
    case "$1" in
{actions}    esac
}}
_mco_ddl() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" word sub="" skip=0 i
    local -a words=()
    for (( i = 1; i < COMP_CWORD; i++ )); do
        word="${{COMP_WORDS[i]}}"
        if [[ "$word" == "=" ]]; then skip=1; continue; fi
        if (( skip )); then skip=0; continue; fi
        case "$word" in
            {flags}) skip=1 ;;
            -*) ;;
            *) if [[ -z "$sub" ]]; then sub="$word"; else words+=("$word"); fi ;;
        esac
    done
    if [[ "$cur" != -* ]]; then
        if [[ "$sub" == rpc && ${{#words[@]}} -eq 0 ]] ||
           [[ "$sub" == plugin && ${{#words[@]}} -eq 1 && "${{words[0]}}" == doc ]]; then
            COMPREPLY=( $(compgen -W "$_mco_ddl_agents" -- "$cur") )
            return 0
        fi
        if [[ "$sub" == rpc && ${{#words[@]}} -eq 1 ]]; then
            COMPREPLY=( $(compgen -W "$(_mco_ddl_actions "${{words[0]}}")" -- "$cur") )
            return 0
        fi
    fi
    _mco "$@"
    if [[ -z "$sub" && "$cur" != -* ]]; then
        COMPREPLY+=( $(compgen -c -- "mco-$cur" | sed 's/^mco-//' | sort -u) )
    fi
}}
if [[ "${{BASH_VERSINFO[0]}}" -eq 4 && "${{BASH_VERSINFO[1]}}" -ge 4 || "${{BASH_VERSINFO[0]}}" -gt 4 ]]; then
    complete -F _mco_ddl -o nosort -o bashdefault -o default mco
else
    complete -F _mco_ddl -o bashdefault -o default mco
fi
"#,
        agents = quoted(&names.join(" ")),
        flags = value_flags.join("|"),
    )
}

fn zsh(agents: &[&Agent], value_flags: &[String]) -> String {
    let mut actions = String::new();
    for agent in agents {
        let list: Vec<String> = agent
            .actions
            .iter()
            .filter(|(a, _)| is_word(a))
            .map(|(a, d)| quoted(&format!("{a}:{}", summary(d).replace(':', "\\:"))))
            .collect();
        actions.push_str(&format!(
            "        ({}) actions=({}) ;;\n",
            agent.name,
            list.join(" ")
        ));
    }
    format!(
        r#"# muster: the actions of the agent before ACTION in `mco rpc AGENT ACTION`,
# from the DDLs mco knew when this script was written.
(( $+functions[_mco_ddl_actions] )) ||
_mco_ddl_actions() {{
    local word skip=0
    local -a positional actions
    for word in "${{(@)words[1,CURRENT-1]}}"; do
        if (( skip )); then skip=0; continue; fi
        case $word in
            ({flags}) skip=1 ;;
            (-*) ;;
            (*) positional+=("$word") ;;
        esac
    done
    # words may or may not still start with `mco rpc`.
    local agent=${{positional[1]}} i=${{positional[(i)rpc]}}
    (( i < ${{#positional}} )) && agent=${{positional[i+1]}}
    case $agent in
{actions}    esac
    _describe -t actions "$agent action" actions
}}

"#,
        flags = value_flags.join("|"),
    )
}

fn fish(agents: &[&Agent], value_flags: &[String]) -> String {
    let mut lines = String::new();
    for agent in agents {
        for (action, description) in agent.actions.iter().filter(|(a, _)| is_word(a)) {
            lines.push_str(&format!(
                "complete -c mco -n '__mco_ddl_rpc_action_of {agent}' -f -a {action} -d {}\n",
                quoted(&summary(description)),
                agent = agent.name,
            ));
        }
        lines.push_str(&format!(
            "complete -c mco -n '__mco_ddl_rpc_at 0; or __mco_ddl_doc_at' -f -a {} -d {}\n",
            agent.name,
            quoted(&summary(&agent.description))
        ));
    }
    let flags: Vec<String> = value_flags.iter().map(|f| quoted(f)).collect();
    format!(
        r#"
# muster: agents and actions for `mco rpc AGENT ACTION` and `mco plugin doc
# AGENT`, from the DDLs mco knew when this script was written, and the
# custom applications (mco-NAME) on PATH.
function __mco_ddl_words
    # The application and the words after it, without flags and their values.
    set -l tokens (commandline -opc)
    set -e tokens[1]
    set -l skip 0
    for token in $tokens
        if test $skip = 1
            set skip 0
        else if contains -- $token {flags}
            set skip 1
        else if not string match -q -- '-*' $token
            echo $token
        end
    end
end
function __mco_ddl_rpc_at
    # True when the word being completed is rpc's positional number $argv[1] (0: AGENT).
    set -l words (__mco_ddl_words)
    test "$words[1]" = rpc; and test (count $words) -eq (math $argv[1] + 1)
end
function __mco_ddl_rpc_action_of
    # True when the word being completed is ACTION and AGENT is $argv[1].
    set -l words (__mco_ddl_words)
    __mco_ddl_rpc_at 1; and test "$words[2]" = "$argv[1]"
end
function __mco_ddl_doc_at
    set -l words (__mco_ddl_words)
    test "$words[1]" = plugin; and test "$words[2]" = doc; and test (count $words) -eq 2
end
complete -c mco -n '__fish_mco_needs_command' -f -a '(for program in $PATH/mco-*; test -x $program; and string replace -r ".*/mco-" "" -- $program; end)' -d 'custom application'
{lines}"#,
        flags = flags.join(" "),
    )
}
