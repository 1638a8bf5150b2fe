//! What the demo shows before anyone writes a file: the sandbox's starting files and the fake credentials
//! that the `deploy.env` file and the `demo://config/credentials` resource leak for toolgate's DLP to redact.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// Sandbox-relative path and contents of each starting file. A file already there is left as it is, so the
/// caller's edits survive a restart.
pub(super) const SEED_FILES: [(&str, &str); 4] = [
    (
        "workspace/readme.txt",
        "Hello from the toolgate demo sandbox.\nThis file lives in the demo server's sandbox folder, never on the host.\n",
    ),
    (
        "README.md",
        "# toolgate demo sandbox\n\nThe demo server's file tools and `file://` resources act only inside this folder.\n\
         Try `read_file` on `/workspace/readme.txt`, then on `/workspace/deploy.env`: the second holds (fake)\n\
         credentials that toolgate redacts before they reach the agent.\n",
    ),
    (
        "notes.txt",
        "Notes\n- The demo tools never touch the host: run_shell, fetch_url and send_email only describe.\n\
         - Resources: the files here, demo://status and demo://config/credentials.\n\
         - Prompts: summarise (text) and code_review (path).\n",
    ),
    // Under workspace/, so the shipped policy (roots /workspace, /home, /tmp) lets the tour read it.
    ("workspace/deploy.env", DEPLOY_ENV),
];

/// A deployment file that leaks credentials, the way real ones do: reading it is the DLP part of the tour.
/// The key id is `AKIA` and 16 of `[A-Z0-9]` between non-alphanumeric neighbours, the shape toolgate's
/// `aws_access_key` detector matches; the secret is 40 mixed-case base64 characters, which the
/// `aws_secret_key` detector reports because the key id stands beside it. Both belong to no account.
const DEPLOY_ENV: &str = concat!(
    "# FAKE demo credentials: they unlock nothing, and exist so toolgate has a secret to redact.\n",
    "APP_ENV=staging\n",
    "AWS_REGION=eu-west-1\n",
    "AWS_ACCESS_KEY_ID=AKIAZ7EXAMPLE4DEMO7Q\n",
    "AWS_SECRET_ACCESS_KEY=FAKEdemoSecretKey/0nlyForToolgateDLPTour\n",
);

/// The text of `demo://config/credentials`: an AWS shared-credentials profile with the same fake key.
pub(super) const CREDENTIALS_TEXT: &str = concat!(
    "# FAKE demo credentials for the toolgate tour; toolgate's DLP redacts them.\n",
    "[default]\n",
    "aws_access_key_id = AKIAZ7EXAMPLE4DEMO7Q\n",
    "aws_secret_access_key = FAKEdemoSecretKey/0nlyForToolgateDLPTour\n",
    "region = eu-west-1\n",
);

/// Writes each starting file that is missing under `root` (creating the folders it needs).
pub(super) fn seed(root: &Path) -> io::Result<()> {
    for (path, text) in SEED_FILES {
        let file = root.join(path);
        if let Some(parent) = file.parent() {
            fs::create_dir_all(parent)?;
        }
        // `create_new` refuses anything already at the path, a dangling symbolic link included, so seeding
        // never overwrites a file nor writes through a link to somewhere else.
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&file)
        {
            Ok(mut created) => created.write_all(text.as_bytes())?,
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}
