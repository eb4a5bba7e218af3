package testutil

// SampleCAPEM is the long-lived CA of config/samples (valid until 2046; its key was thrown
// away), for tests that need a stable, real certificate, such as golden files.
const SampleCAPEM = `-----BEGIN CERTIFICATE-----
MIIB0TCCAXegAwIBAgIUGSZzxvdrh67C8HjbqA3nmlzThmQwCgYIKoZIzj0EAwIw
PjE8MDoGA1UEAwwzcmVnd2lyZSBzYW1wbGUgQ0EgKHJlcGxhY2Ugd2l0aCB5b3Vy
IHJlZ2lzdHJ5J3MgQ0EpMB4XDTI2MTEyNzA1NDAwNFoXDTQ2MTEyMjA1NDAwNFow
PjE8MDoGA1UEAwwzcmVnd2lyZSBzYW1wbGUgQ0EgKHJlcGxhY2Ugd2l0aCB5b3Vy
IHJlZ2lzdHJ5J3MgQ0EpMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEYl6iz+Mo
dElFFCFATrDxEH+cExb5F3H7A/Qp2R4WNYPcxUuJ3JLHcFY9jYqPHH7PmwfMskHY
EguwYhhQgMplbaNTMFEwHQYDVR0OBBYEFMv6MHDSDic59el8FAS+QZbYOvAbMB8G
A1UdIwQYMBaAFMv6MHDSDic59el8FAS+QZbYOvAbMA8GA1UdEwEB/wQFMAMBAf8w
CgYIKoZIzj0EAwIDSAAwRQIgQyv8HSUe38VRjQsWiMDpDgo6mpnpXSHSx2pZhrjY
UbkCIQCXTx1za86pSHggdcEZw7pbHxSbhiN1xSNNPx2I0f/9mg==
-----END CERTIFICATE-----
`
