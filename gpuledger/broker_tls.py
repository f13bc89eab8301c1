"""TLS and SCRAM material for the local broker's SASL_SSL listener (``kafka start --secure``).

Everything is made with the JDK's ``keytool`` (no openssl needed), once per data dir, in
``<data_dir>/tls/`` (mode 0700)::

    ca.p12            the local CA's key pair (PKCS12)
    ca.pem            the CA certificate, PEM: what clients trust (ssl.ca.location)
    broker.p12        the broker keystore: its key and a certificate for 127.0.0.1/localhost,
                      signed by the CA, with the CA in the chain
    truststore.p12    the CA certificate alone (for Java clients)
    store.password    the random password of the three stores

The SCRAM-SHA-512 user gets a random password when the storage is formatted
(``kafka-storage format --add-scram``); ``<data_dir>/client.properties`` (mode 0600) holds the
matching client settings, read with ``--kafka-config``.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from gpuledger.kafka_jars import tail_text
from pipeline.atomic import write_atomic
from pipeline.errors import TerminalError

log = logging.getLogger(__name__)

SCRAM_MECHANISM = "SCRAM-SHA-512"
SCRAM_USER = "gpuledger"
VALIDITY_DAYS = 3650


class TlsError(TerminalError, RuntimeError):
    """The TLS or SCRAM material could not be created."""


@dataclass(frozen=True)
class TlsMaterial:
    folder: Path
    store_password: str = field(repr=False)

    @property
    def ca_pem(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def keystore(self) -> Path:
        return self.folder / "broker.p12"

    @property
    def truststore(self) -> Path:
        return self.folder / "truststore.p12"


@dataclass(frozen=True)
class ScramUser:
    name: str
    password: str = field(repr=False)

    def format_arg(self) -> str:
        """The ``--add-scram`` value of ``kafka-storage format``."""
        return f"{SCRAM_MECHANISM}=[name={self.name},password={self.password}]"


def new_scram_user(name: str = SCRAM_USER) -> ScramUser:
    # URL-safe alphabet: nothing that the --add-scram syntax ([,=]) or a properties file reads
    return ScramUser(name, secrets.token_urlsafe(24))


def find_keytool(java: str) -> str:
    """``keytool`` next to ``java`` (same JDK), else the one on PATH."""
    beside = Path(java).resolve().parent / "keytool"
    if beside.is_file():
        return str(beside)
    found = shutil.which("keytool")
    if found is None:
        raise TlsError(f"'keytool' (part of the JDK) is not next to {java} nor on PATH")
    return found


def ensure_tls(folder: Path, keytool: str) -> TlsMaterial:
    """The CA, broker keystore and truststore in ``folder``; made if any is missing."""
    password_file = folder / "store.password"
    done = folder / ".complete"
    if done.is_file() and password_file.is_file():
        return TlsMaterial(folder, password_file.read_text(encoding="utf-8").strip())
    if folder.exists():
        shutil.rmtree(folder)  # a half-made set from an interrupted start
    folder.mkdir(parents=True, mode=0o700)
    material = TlsMaterial(folder, secrets.token_urlsafe(18))
    _write_private(password_file, material.store_password + "\n")
    pw = material.store_password
    ca_store = folder / "ca.p12"
    csr, crt = folder / "broker.csr", folder / "broker.crt"
    log.info("creating a local CA and the broker keystore in %s", folder)
    for args in _keytool_steps(material, ca_store, csr, crt):
        _keytool(keytool, args, pw)
    csr.unlink()
    for path in (ca_store, material.keystore, material.truststore):
        path.chmod(0o600)
    done.touch()
    return material


def _keytool_steps(material: TlsMaterial, ca_store: Path, csr: Path, crt: Path) -> list[list[str]]:
    """The ``keytool`` runs, in order, that make the CA (``ca_store``, ``ca.pem``), sign the
    broker's certificate (request ``csr``, certificate ``crt``) into its keystore, and make the
    truststore."""
    pw = material.store_password
    store = ["-storetype", "PKCS12", "-storepass", pw, "-keypass", pw]
    return [
        [
            "-genkeypair", "-alias", "ca", "-keyalg", "RSA", "-keysize", "2048",
            "-dname", "CN=gpuledger local CA", "-validity", str(VALIDITY_DAYS),
            "-ext", "bc:c=ca:true", "-ext", "ku:c=keyCertSign,cRLSign",
            "-keystore", str(ca_store), *store,
        ],
        [
            "-exportcert", "-rfc", "-alias", "ca", "-keystore", str(ca_store),
            "-storepass", pw, "-file", str(material.ca_pem),
        ],
        [
            "-genkeypair", "-alias", "broker", "-keyalg", "RSA", "-keysize", "2048",
            "-dname", "CN=localhost", "-validity", str(VALIDITY_DAYS),
            "-keystore", str(material.keystore), *store,
        ],
        [
            "-certreq", "-alias", "broker", "-keystore", str(material.keystore),
            "-storepass", pw, "-file", str(csr),
        ],
        [
            "-gencert", "-rfc", "-alias", "ca", "-keystore", str(ca_store), "-storepass", pw,
            "-infile", str(csr), "-outfile", str(crt), "-validity", str(VALIDITY_DAYS),
            "-ext", "san=ip:127.0.0.1,dns:localhost",
            "-ext", "ku:c=digitalSignature,keyEncipherment", "-ext", "eku=serverAuth",
        ],
        [
            "-importcert", "-noprompt", "-alias", "ca", "-file", str(material.ca_pem),
            "-keystore", str(material.keystore), "-storepass", pw,
        ],
        [
            "-importcert", "-alias", "broker", "-file", str(crt),
            "-keystore", str(material.keystore), "-storepass", pw,
        ],
        [
            "-importcert", "-noprompt", "-alias", "ca", "-file", str(material.ca_pem),
            "-keystore", str(material.truststore), *store,
        ],
    ]  # fmt: skip


def _keytool(keytool: str, args: list[str], password: str) -> None:
    try:
        proc = subprocess.run(
            [keytool, *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TlsError(f"keytool {args[0]} failed: {exc}") from exc
    if proc.returncode != 0:
        output = tail_text(proc.stdout + proc.stderr, 15).replace(password, "***")
        raise TlsError(f"keytool {args[0]} failed (exit {proc.returncode}):\n{output}")


def client_properties(user: ScramUser, ca_pem: Path, bootstrap: str) -> str:
    """The client settings (``--kafka-config``) for the SASL_SSL listener at ``bootstrap``."""
    return (
        f"# gpuledger client settings for the local broker's SASL_SSL listener {bootstrap}\n"
        f"#   gpuledger collect --kafka {bootstrap} --kafka-config <this file> ...\n"
        "# Holds the password: keep it private (mode 0600).\n"
        "security.protocol=SASL_SSL\n"
        f"sasl.mechanism={SCRAM_MECHANISM}\n"
        f"sasl.username={user.name}\n"
        f"sasl.password={user.password}\n"
        f"ssl.ca.location={ca_pem}\n"
    )


def write_client_properties(path: Path, user: ScramUser, ca_pem: Path, bootstrap: str) -> None:
    _write_private(path, client_properties(user, ca_pem, bootstrap))


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by the owner only (0600)."""
    write_atomic(path, text, private=True)
