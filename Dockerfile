# Corridor on Node 24 LTS. Build: docker build -t corridor .   Run: docker run -p 8080:8080 -v $PWD/policies:/app/policies corridor
FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY src ./src
RUN npx tsc -p tsconfig.build.json

FROM node:24-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY bin ./bin
COPY policies ./policies
COPY certs ./certs
# The listeners bind where corridor.yaml says; in a container, mount a config that listens on 0.0.0.0.
# Upstreams or a Vault behind a private CA: mount the CA and set NODE_EXTRA_CA_CERTS to it (Vault also
# takes vault.ca_file). Corridor refuses to start with NODE_TLS_REJECT_UNAUTHORIZED=0.
USER node
EXPOSE 8080 8081
# V8 would grow the young generation to 128 MiB on a large host; 16 MiB semi-spaces cost no measurable
# throughput and ~80 MiB less RSS under load (README, Benchmark). Allocation-site pretenuring put the
# request path's short-lived objects straight into the old generation, where only major collections
# free them; without it Corridor spends 4 % less CPU per request (docs/benchmarks.md, "What the garbage
# collector costs"). Keep in step with package.json "start".
ENTRYPOINT ["node", "--max-semi-space-size=16", "--no-allocation-site-pretenuring", "bin/corridor.js"]
CMD ["serve", "--config", "policies/corridor.yaml"]
