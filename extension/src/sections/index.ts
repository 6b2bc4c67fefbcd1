/**
 * The sections of the Workbench sidebar, in one place.
 *
 * To add one (datasets, templates, dashboards...), write a module exporting an
 * IWorkbenchSection whose `create` returns a widget (usually a ReactWidget), and
 * add it to SECTIONS. Its HTTP calls go in ../request.ts.
 */
import { IWorkbenchSection } from '../context';
import { clustersSection } from './clusters';
import { datasetsSection } from './datasets';
import { panesSection } from './panes';
import { profilesSection } from './profiles';
import { templatesSection } from './templates';

export const SECTIONS: IWorkbenchSection[] = [
  profilesSection,
  clustersSection,
  panesSection,
  templatesSection,
  datasetsSection
];
