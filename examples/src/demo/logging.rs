//! Logging: to stderr, and also to `LOG_FILE` when it is set.

use std::io::Write;

struct Tee(Option<std::fs::File>);

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stderr().write_all(buf)?;
        if let Some(file) = &mut self.0 {
            file.write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()?;
        if let Some(file) = &mut self.0 {
            file.flush()?;
        }
        Ok(())
    }
}

pub(super) fn init_logging(log_file: Option<String>) -> std::io::Result<()> {
    let file = match log_file {
        Some(path) => {
            if let Some(dir) = std::path::Path::new(&path).parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir)?;
                }
            }
            Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            )
        }
        None => None,
    };
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .target(env_logger::Target::Pipe(Box::new(Tee(file))))
        .try_init();
    Ok(())
}
