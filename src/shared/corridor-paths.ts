/**
 * Corridor's own endpoints on the agent listener, under one prefix no connector can take: an
 * agent's reads of its approvals, and the error reference. Requests there are to Corridor itself,
 * not calls to a system of record.
 */
export const CORRIDOR_PATH_PREFIX = '/_corridor/'

/** Where an agent reads where its held request stands: this prefix, then the approval's id. */
export const APPROVAL_STATUS_PREFIX = `${CORRIDOR_PATH_PREFIX}approvals/`
