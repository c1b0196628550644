"""Assemble the Apache Kafka broker classpath from Maven Central, once per version, into a cache."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import platformdirs

KAFKA_VERSION = "4.1.1"
LOG4J2_VERSION = "2.24.3"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies"


class HarnessError(RuntimeError):
    """The harness could not provide a broker (missing java/mvn, download failed, start failed)."""


def cache_root() -> Path:
    return Path(os.environ.get("KAFKAOPS_CACHE", platformdirs.user_cache_dir("kafkaops")))


def kafka_libs(version: str = KAFKA_VERSION) -> Path:
    """The directory of broker jars, downloading them with Maven the first time."""
    home = cache_root() / f"kafka-{version}"
    libs = home / "libs"
    done = home / ".complete"
    if done.exists():
        return libs
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return libs
        _download(home, libs, version)
        done.touch()
    return libs


def _download(home: Path, libs: Path, version: str) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise HarnessError("Maven (mvn) is not on PATH: it is needed once to fetch the Kafka jars")
    pom = resources.files("kafkaops.testing").joinpath("pom.xml").read_text()
    (home / "pom.xml").write_text(pom)
    if libs.exists():
        shutil.rmtree(libs)
    cmd = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(home / "pom.xml"),
        DEPENDENCY_PLUGIN,
        "-DincludeScope=runtime",
        f"-DoutputDirectory={libs}",
        f"-Dkafka.version={version}",
        f"-Dlog4j2.version={LOG4J2_VERSION}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not any(libs.glob("kafka_2.13-*.jar")):
        tail = (result.stdout + result.stderr)[-2000:]
        raise HarnessError(f"mvn could not assemble Kafka {version} jars:\n{tail}")


def java() -> str:
    found = shutil.which("java")
    if found is None:
        raise HarnessError("java is not on PATH: Kafka needs Java 17 or later")
    return found
