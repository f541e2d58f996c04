//! Glue between the engine's `plugins.dir` and `nebula-process` (SPEC §9).

use std::path::PathBuf;
use std::sync::Arc;

use nebula_core::manager::PluginConstructor;
use nebula_core::{InstanceSetup, NebulaConfig, ProcessConnector, ProcessPluginSpec};
use nebula_process::{ProcessHooks, ProcessLimits, ProcessPlugin, ProcessSpec};

/// Builds [`ProcessPlugin`]s from the plugin directories the engine found.
#[derive(Debug, Clone)]
pub struct ProcessRuntime {
    run_dir: PathBuf,
}

impl ProcessRuntime {
    /// Sockets and pid files go to `run_dir` (`<data dir>/run`, 0700).
    pub fn new(run_dir: PathBuf) -> Self {
        ProcessRuntime { run_dir }
    }
}

/// `0` in the configuration means no limit.
fn limit(value: u64) -> Option<u64> {
    (value > 0).then_some(value)
}

impl ProcessConnector for ProcessRuntime {
    fn constructor(&self, spec: &ProcessPluginSpec, config: &NebulaConfig) -> PluginConstructor {
        let process = &config.plugins.process;
        let spec = ProcessSpec {
            name: spec.name.clone(),
            dir: spec.dir.clone(),
            command: spec.command.clone(),
            env: spec.env.clone(),
            run_dir: self.run_dir.clone(),
            limits: ProcessLimits {
                memory_limit_mb: limit(process.memory_limit_mb),
                cpu_time_limit_sec: limit(process.cpu_time_limit_sec),
                max_open_files: limit(process.max_open_files),
                max_processes: limit(process.max_processes),
            },
            shutdown_grace: process.shutdown_grace(),
            call_timeout: config.plugins.call_timeout(),
            max_message_bytes: config.server.max_body_bytes,
        };
        Arc::new(move |setup: &InstanceSetup| {
            let (exits, pids) = (setup.watch.clone(), setup.watch.clone());
            let hooks = ProcessHooks {
                host: setup
                    .host
                    .as_ref()
                    .map(|h| (h.endpoint.clone(), h.token.clone())),
                on_exit: Arc::new(move |reason| exits.exited(reason)),
                on_pid: Arc::new(move |pid| pids.set_pid(pid)),
            };
            Box::new(ProcessPlugin::new(spec.clone(), hooks))
        })
    }
}
