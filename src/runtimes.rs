//! The runtime catalog: which Lambda runtimes exist and which base image each runs in.
//!
//! The data lives in `runtime-images/runtimes.toml` so that adding a runtime is a data change; it is
//! compiled into the binary and parsed once on first use.

use std::sync::LazyLock;

use serde::Deserialize;

/// An instruction-set architecture of a Lambda function (`Architectures` in the template).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, clap::ValueEnum)]
pub enum Architecture {
    #[serde(rename = "x86_64")]
    #[value(name = "x86_64")]
    X86_64,
    #[serde(rename = "arm64")]
    #[value(name = "arm64")]
    Arm64,
}

impl Architecture {
    pub fn parse(value: &str) -> Option<Architecture> {
        match value {
            "x86_64" => Some(Architecture::X86_64),
            "arm64" => Some(Architecture::Arm64),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Architecture::X86_64 => "x86_64",
            Architecture::Arm64 => "arm64",
        }
    }

    /// The OCI platform architecture of image indexes (`linux/amd64`, `linux/arm64`).
    pub fn oci_arch(self) -> &'static str {
        match self {
            Architecture::X86_64 => "amd64",
            Architecture::Arm64 => "arm64",
        }
    }
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One managed runtime, e.g. `python3.12`.
#[derive(Debug, Clone, Deserialize)]
pub struct Runtime {
    pub name: String,
    /// The multi-arch base image, e.g. `public.ecr.aws/lambda/python:3.12`.
    pub image: String,
    pub architectures: Vec<Architecture>,
    /// `python`, `nodejs`, `java`, `dotnet`, `go`, `ruby` or `provided`.
    pub family: String,
}

impl Runtime {
    pub fn supports(&self, arch: Architecture) -> bool {
        self.architectures.contains(&arch)
    }
}

#[derive(Deserialize)]
struct Catalog {
    runtime: Vec<Runtime>,
    deprecated: Vec<String>,
}

static CATALOG: LazyLock<Catalog> = LazyLock::new(|| {
    toml::from_str(include_str!("../runtime-images/runtimes.toml"))
        .expect("runtime-images/runtimes.toml is valid (checked by a unit test)")
});

/// Looks a runtime up by its exact name (`python3.12`).
pub fn find(name: &str) -> Option<&'static Runtime> {
    CATALOG.runtime.iter().find(|r| r.name == name)
}

/// Every known runtime, in catalog order.
pub fn all() -> &'static [Runtime] {
    &CATALOG.runtime
}

/// Whether AWS Lambda has retired this runtime (SAM prints a warning for these).
pub fn is_deprecated(name: &str) -> bool {
    CATALOG.deprecated.iter().any(|d| d == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SAM's image naming (`lambda_image.py::Runtime.get_image_name_tag`), minus the `-<arch>` suffix
    /// that lamina replaces with a platform choice inside the multi-arch index.
    fn sam_tag(runtime: &str) -> String {
        if runtime == "provided" {
            return "provided:alami".into();
        }
        if let Some(rest) = runtime.strip_prefix("provided.") {
            return format!("provided:{rest}");
        }
        if let Some(v) = runtime.strip_prefix("dotnet") {
            return format!("dotnet:{v}");
        }
        let split = runtime.find(|c: char| c.is_ascii_digit()).unwrap();
        let (name, version) = runtime.split_at(split);
        format!("{name}:{}", version.trim_end_matches(".x"))
    }

    #[test]
    fn test_runtimes_every_row_matches_sam_naming() {
        assert_eq!(all().len(), 31, "SAM 1.170 knows 31 runtimes");
        for runtime in all() {
            assert_eq!(
                runtime.image,
                format!("public.ecr.aws/lambda/{}", sam_tag(&runtime.name)),
                "{}",
                runtime.name
            );
            assert!(runtime.supports(Architecture::X86_64), "{}", runtime.name);
            let x86_only = matches!(runtime.name.as_str(), "go1.x" | "provided");
            assert_eq!(
                runtime.supports(Architecture::Arm64),
                !x86_only,
                "{}",
                runtime.name
            );
            assert!(
                [
                    "python", "nodejs", "java", "dotnet", "go", "ruby", "provided"
                ]
                .contains(&runtime.family.as_str()),
                "{}",
                runtime.name
            );
            assert!(
                runtime.name.starts_with(&runtime.family),
                "{}",
                runtime.name
            );
        }
    }

    #[test]
    fn test_runtimes_lookup() {
        assert_eq!(
            find("python3.12").unwrap().image,
            "public.ecr.aws/lambda/python:3.12"
        );
        assert_eq!(
            find("nodejs20.x").unwrap().image,
            "public.ecr.aws/lambda/nodejs:20"
        );
        assert_eq!(
            find("java8.al2").unwrap().image,
            "public.ecr.aws/lambda/java:8.al2"
        );
        assert_eq!(
            find("provided.al2023").unwrap().image,
            "public.ecr.aws/lambda/provided:al2023"
        );
        assert!(find("python2.7").is_none());
        assert!(is_deprecated("python2.7"));
        assert!(!is_deprecated("python3.12"));
    }
}
