//! The `rescue> ` prompt runs what it parses through the executor its caller hands it
//! (`ui::prompt::Executor`, `cli::run` in the binary), so the line mode works without the dispatcher:
//! here a stand-in records every command instead of running it.

use std::sync::Mutex;

use rescue::args::Command;
use rescue::ui::prompt::execute;

static RAN: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn record(command: Command) -> u8 {
    RAN.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(format!("{command:?}"));
    7
}

#[test]
fn prompt_lines_run_through_the_executor_the_prompt_was_given() {
    let state = tempfile::tempdir().expect("temporary state directory");
    // SAFETY: this binary's only test sets the variable before anything reads the environment; the
    // case log of each prompt line goes here instead of /run/rescue.
    unsafe { std::env::set_var("RESCUE_STATE_DIR", state.path()) };

    // A command: parsed with the CLI grammar, run by the executor, its status returned as is.
    assert_eq!(execute("devices --json", "test", record), Some(7));
    // Not a command: the usage status, and nothing runs.
    assert_eq!(execute("frobnicate --now", "test", record), Some(2));
    // Prompt-only words never reach the executor either.
    assert_eq!(execute("help", "test", record), Some(0));
    assert_eq!(execute("console /dev/ttyS0", "test", record), None);
    assert_eq!(execute("   ", "test", record), None);

    let ran = RAN.lock().unwrap_or_else(|e| e.into_inner());
    assert_eq!(*ran, ["Devices { json: true }"]);
}
