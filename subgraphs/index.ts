/**
 * The platform: the three parts, loaded together so that every upper part has registered its hooks on the parts
 * below before any request or tick runs. Handlers import the parts from here.
 */
export * as ark from './ark';
export * as panama from './panama';
export * as butler from './butler';
