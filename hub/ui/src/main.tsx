import { render } from 'preact';
import { App } from './app';
import { unlockAudio } from './lib/alert';
import './styles.css';

unlockAudio();
render(<App />, document.getElementById('app')!);
