import { LabIcon } from '@jupyterlab/ui-components';

const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <rect x="3" y="3" width="7" height="7" rx="1.5"/>
    <rect x="14" y="3" width="7" height="7" rx="1.5"/>
    <rect x="3" y="14" width="7" height="7" rx="1.5"/>
    <path d="M17.5 13a4.5 4.5 0 1 0 0 9 4.5 4.5 0 0 0 0-9zm-.75 2h1.5v1.75H20v1.5h-1.75V20h-1.5v-1.75H15v-1.5h1.75z"/>
  </g>
</svg>`;

/** The Workbench sidebar icon; follows the theme through jp-icon3. */
export const workbenchIcon = new LabIcon({
  name: 'workbench:icon',
  svgstr: svg
});
