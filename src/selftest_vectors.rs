//! Known signatures for the configure-time self-test of the host signature backend: for each
//! algorithm one valid signature over `MESSAGE`, from which the self-test also derives an
//! invalid one. The RSA key is the RSA-2048 key of RFC 7515 appendix A.2; the EC keys were
//! generated once with ring 0.17 for this purpose (only their public points are kept). Unit
//! tests check every vector with the ring backend, so a wrong constant fails `cargo test`.

use crate::algorithm::Algorithm;
use crate::jwks::KeyMaterial;

/// The signed message.
pub const MESSAGE: &[u8] = b"idaas-jwt-filter signature backend self-test";

const RSA_N_HEX: &[&str] = &[
    "a1f8160ae2e3c9b465ce8d2d656263362b927dbe29e1f02477fc1625cc90a136e38bd93497c5b6ea63dd7711",
    "e67c7429f956b0fb8a8f089adc4b69893cc1333f53edd019b87784252fec914fe4857769594bea4280d32c0f",
    "55bf62944f130396bc6e9bdf6ebdd2bda3678eeca0c668f701b38dbffb38c8342ce2fe6d27fade4a5a487497",
    "9dd4b9cf9adec4c75b05852c2c0f5ef8a5c1750392f944e8ed64c110c6b647609aa4783aeb9c6c9ad7553130",
    "50638b83665c6f6f7a82a396702a1f641b82d3ebf2392219491fb686872c5716f50af8358d9a8b9d17c34072",
    "8f7f87d89a18d8fcab67ad84590c2ecf759339363c07034d6f606f9e21e05456cae5e9a1",
];

const RSA_E_HEX: &str = "010001";

const RS256_SIGNATURE_HEX: &[&str] = &[
    "10b0694c7e0b1c41e44a0e8d1f8c008dbe110a9e64ce21c76b762277090dfe70fba6d3c9157883e6b7ce0528",
    "e55a916c88a2ba006b64fe294a389fc48b2f055c7f16861bbaf15abe8bc00dca03409dee23ede7e0c7948c73",
    "a78cdcfa1fc95cf5d529456e40a0506a26abbfa1c7ca396be873d196119b55fdd45253975539d99962feb219",
    "34a84b6ff09aa1c892a7a578cc46d9418198dba4bf71342ea22cf28da3692461e0623206c5635d616db2ce7a",
    "4fcb4dce05b14882db838ca5c6f6eabce142c085d6a5ca3663ad4d725d30699e72fcbc8f0682565670255f04",
    "34acdc2a783ae5b98c7930d7ee2cddacda61867bd026e2791f27b1eddb06e577095ba841",
];

const RS384_SIGNATURE_HEX: &[&str] = &[
    "1915e30852c7fb6b76bbd6a48fee9a79eadf2153cd77deef027afd6efbfd8130d206aacfa2c8be653da13107",
    "981deb17b5529c75cfa1c3df79c12722f2407386798aead8eb524a8eb845e6911018519cb67e0e7d9a6e7116",
    "aca53f56f6bdc81f05dc8e09f2051c253cb1ad2a2d52a8f79c9c872e9aff1457c358c5150c3bbd3922cf35aa",
    "35219057876d5821848c6d10f7823d24aa109416ec8299087f90a98027a7d1d0a09602c35757679fd12d56fd",
    "2f320b9d9fba157ef802501749812cdbb968c83e21230906fcb4a7875f96f40a42f9202f2771226c81538cc2",
    "cc370bbfee58e769529b853fd4cbea79b6e06a5e53246e2e6842c9af558707000cfb6fab",
];

const RS512_SIGNATURE_HEX: &[&str] = &[
    "50f0addcd8919a580c2fefdbf55fc5ed994369b325498977dde502f98964080050f1c523e79b4bd713b7ebf9",
    "86de111eb2e980e20a8818f3688d4a021993015c8b93b12263f73bf06474f0b42ad432b80183c7afefea9419",
    "241364e5847c9e3aab176ea6300251c4ae10e1808b1ff5f7031f6e31ad7653b5587e20c06beb0c65021bcbec",
    "a4cf5c58b7811eb0ae32898bb2351c651669f09845a1fc0167f463848cd8d6f7ab2032351845a956c2922c89",
    "647c424b709d4f3f5964e62e46be41c9879a87d641551310ef03003b6d35e161c905422e83d17d8dbc11fa70",
    "046b17966f05315d38f05bf3ed9ab3f5f2eb043f256e19b5e8ceb2d57ac1940e1fc6ed51",
];

const ES256_SIGNATURE_HEX: &[&str] = &[
    "87cb3dbf65756ebbe75c70e6132a278787a46cb09de7c82873f2b70d608c36ae2dfbf5865b7f3eeb353125da",
    "c44b07d3d9d2830d0351d43aa91649a2de3d004e",
];

const ES384_SIGNATURE_HEX: &[&str] = &[
    "fd350479794f255656ae83d2847475f0349977e8d3bf1552bf693d1b2a8d3187fb1e150f1b99f476c0aa2238",
    "aedb8c4d4863db6225eed25c856fa6ccb9c0ee0e11713ac7bff7af37fc3a4deac6b9f1fa380eec0dd159980d",
    "2f1a0dad6d05882f",
];

const ES256_POINT_HEX: &[&str] = &[
    "04921ea417359afdd99083db6f645397403ea6205e1897bdf1a5be20a10f9fdde9ba3da4a84b1e1ee1402155",
    "e252fa08ea3e4ae8ec30b99982a79afe06632a2564",
];

const ES384_POINT_HEX: &[&str] = &[
    "0468b4787f3a9de2b2d68d071af1c0578ee789874bfebb54165d7c2acd5a64b512f26bcf45935c3400db547e",
    "0c7cdd19b9df20b734fcff2e6bc70890fa452c0fb23d8eaed3447e7ee36ea24aefd4f824ac13e51d0696ee66",
    "1565039fcc92022b7d",
];

/// A self-test case: algorithm, key and a valid signature of `MESSAGE`.
pub struct SelfTestVector {
    pub alg: Algorithm,
    pub key: KeyMaterial,
    pub signature: Vec<u8>,
}

/// Returns one vector per algorithm the host backend may take over.
pub fn vectors() -> Vec<SelfTestVector> {
    let rsa = || KeyMaterial::Rsa {
        n: decode(RSA_N_HEX),
        e: decode(&[RSA_E_HEX]),
    };
    vec![
        SelfTestVector { alg: Algorithm::RS256, key: rsa(), signature: decode(RS256_SIGNATURE_HEX) },
        SelfTestVector { alg: Algorithm::RS384, key: rsa(), signature: decode(RS384_SIGNATURE_HEX) },
        SelfTestVector { alg: Algorithm::RS512, key: rsa(), signature: decode(RS512_SIGNATURE_HEX) },
        SelfTestVector {
            alg: Algorithm::ES256,
            key: KeyMaterial::EcP256 { point: decode(ES256_POINT_HEX) },
            signature: decode(ES256_SIGNATURE_HEX),
        },
        SelfTestVector {
            alg: Algorithm::ES384,
            key: KeyMaterial::EcP384 { point: decode(ES384_POINT_HEX) },
            signature: decode(ES384_SIGNATURE_HEX),
        },
    ]
}

/// Decodes hex text split over several string constants.
fn decode(parts: &[&str]) -> Vec<u8> {
    let digits: Vec<u8> = parts
        .iter()
        .flat_map(|part| part.bytes())
        .filter_map(|byte| char::from(byte).to_digit(16))
        .map(|digit| digit as u8)
        .collect();
    digits.chunks(2).map(|pair| pair.iter().fold(0u8, |acc, digit| (acc << 4) | digit)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature;

    #[test]
    fn every_vector_verifies_with_ring() {
        for vector in vectors() {
            assert!(signature::verify(vector.alg, &vector.key, MESSAGE, &vector.signature), "{}", vector.alg);
        }
    }

    #[test]
    fn flipped_signature_fails_with_ring() {
        for mut vector in vectors() {
            if let Some(last) = vector.signature.last_mut() {
                *last ^= 1;
            }
            assert!(!signature::verify(vector.alg, &vector.key, MESSAGE, &vector.signature), "{}", vector.alg);
        }
    }
}
