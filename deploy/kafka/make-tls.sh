#!/bin/sh
# A CA, a broker keystore and truststore for the compose broker's SASL_SSL listener (host name
# "kafka"), made once in /tls with the JRE's keytool (deploy/kafka/compose.secure.yml runs it).
# STORE_PASSWORD: the stores' password, from the environment; it is written to store_creds,
# the credentials file the apache/kafka image reads (KAFKA_SSL_*_CREDENTIALS).
set -eu
cd /tls
[ -f .complete ] && exit 0
rm -f ca.p12 ca.pem broker.p12 broker.csr broker.crt truststore.p12 store_creds
pw="$STORE_PASSWORD"
keytool -genkeypair -alias ca -keyalg RSA -keysize 2048 -dname "CN=gpuledger compose CA" \
  -validity 3650 -ext bc:c=ca:true -ext ku:c=keyCertSign,cRLSign \
  -keystore ca.p12 -storetype PKCS12 -storepass "$pw" -keypass "$pw"
keytool -exportcert -rfc -alias ca -keystore ca.p12 -storepass "$pw" -file ca.pem
keytool -genkeypair -alias broker -keyalg RSA -keysize 2048 -dname "CN=kafka" -validity 3650 \
  -keystore broker.p12 -storetype PKCS12 -storepass "$pw" -keypass "$pw"
keytool -certreq -alias broker -keystore broker.p12 -storepass "$pw" -file broker.csr
keytool -gencert -rfc -alias ca -keystore ca.p12 -storepass "$pw" -infile broker.csr \
  -outfile broker.crt -validity 3650 -ext san=dns:kafka,dns:localhost,ip:127.0.0.1 \
  -ext ku:c=digitalSignature,keyEncipherment -ext eku=serverAuth
keytool -importcert -noprompt -alias ca -file ca.pem -keystore broker.p12 -storepass "$pw"
keytool -importcert -alias broker -file broker.crt -keystore broker.p12 -storepass "$pw"
keytool -importcert -noprompt -alias ca -file ca.pem -keystore truststore.p12 \
  -storetype PKCS12 -storepass "$pw"
printf '%s' "$pw" > store_creds
rm -f broker.csr
# the broker runs as the image's unprivileged user; the volume is mounted only where needed
chmod 644 ca.pem broker.p12 truststore.p12 store_creds
touch .complete
