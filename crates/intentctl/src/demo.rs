//! `intentctl demo`: placeholder.
#[derive(clap::Args)]
pub struct DemoArgs {}
pub async fn run(_args: DemoArgs) -> anyhow::Result<std::process::ExitCode> {
    Ok(std::process::ExitCode::SUCCESS)
}
