// `html`: htm bound to Preact's `h`, so views are tagged templates (no build step, no JSX).
import { h } from 'preact';
import htm from 'htm';

export const html = htm.bind(h);
